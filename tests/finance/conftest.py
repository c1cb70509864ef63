import pytest


@pytest.fixture(scope="session")
def sp500_windows():
    from jaxlab.finance import data
    dates, arr = data.load_arch_ohlcv("sp500")
    panel = data.make_panel(dates[:400], arr[:400], ["sp500"])
    return data.make_windows(panel, 30, 0, 400)


@pytest.fixture(scope="session")
def synth():
    from jaxlab.finance import data
    return data.synthetic_universe(0, num_assets=8, num_days=600)
