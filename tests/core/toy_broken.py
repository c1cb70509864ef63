"""An experiment that always fails, for the reproduce driver's keep-going test."""

from jaxlab.core.app import launch


def run(config, workdir):
    raise RuntimeError("toy_broken: deliberate failure")


if __name__ == "__main__":
    launch("toy_broken", run)
