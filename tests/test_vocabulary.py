"""docs/VOCABULARY.md is kept: banned spellings are found by walking the AST of every library module.

Each check names the file and line of an offence, so a new module that drifts fails here."""

import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = sorted(glob.glob(os.path.join(ROOT, "jaxlab", "**", "*.py"), recursive=True))
EXP = sorted(glob.glob(os.path.join(ROOT, "experiments", "**", "*.py"), recursive=True))
BANNED_ARGS = {
    "clip": "a PPO clip range is `clip_eps`; a bound on a log-ratio is `log_ratio_clip`",
    "eps_clip": "use `clip_eps`", "clip_param": "use `clip_eps`", "clip_ratio": "use `clip_eps`",
    "ppo_eps": "use `clip_eps`",
    "log_probs": "use `logp_bt`", "logprobs": "use `logp_bt`", "old_log_probs": "use `old_logp_bt`",
    "old_logprobs": "use `old_logp_bt`", "masks": "use `mask_bt` / `where=`", "reduce": "use `reduction=`",
}


CLASS_ALIASES = {"PartitionSpec"}   # `PartitionSpec as P` is JAX's own idiom (a class, not a module)


def _parse(path):
    with open(path) as f:
        return ast.parse(f.read(), filename=path)


def _rel(path):
    return os.path.relpath(path, ROOT)


def test_the_check_sees_the_library():
    assert len(LIB) > 50 and any(p.endswith(os.path.join("rl", "losses.py")) for p in LIB)


def test_no_banned_argument_names_in_the_library():
    bad = []
    for path in LIB:
        for node in ast.walk(_parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs:
                    if arg.arg in BANNED_ARGS:
                        bad.append(f"{_rel(path)}:{node.lineno} `{arg.arg}`: {BANNED_ARGS[arg.arg]}")
    assert not bad, "\n".join(bad)


def test_no_single_letter_module_aliases_in_library_and_experiments():
    bad = []
    for path in LIB + EXP:
        for node in ast.walk(_parse(path)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if alias.asname is not None and len(alias.asname) == 1 and alias.name not in CLASS_ALIASES:
                        bad.append(f"{_rel(path)}:{node.lineno} `as {alias.asname}`")
    assert not bad, "\n".join(bad)


def _is_call_to(node, attr):
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr


def test_importing_the_library_has_no_side_effects():
    """No module-level call statements (registry writes, backend switches) in jaxlab/; no
    `matplotlib.use` anywhere users run code."""
    bad = []
    for path in LIB:
        for node in _parse(path).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                bad.append(f"{_rel(path)}:{node.lineno} module-level call `{ast.unparse(node)[:60]}`")
    for path in LIB + EXP:
        for node in ast.walk(_parse(path)):
            if _is_call_to(node, "use") and "matplotlib" in ast.unparse(node.func):
                bad.append(f"{_rel(path)}:{node.lineno} matplotlib.use")
    assert not bad, "\n".join(bad)


def test_jax_flags_live_in_the_root_conftest_only():
    allowed = {os.path.join("tests", "conftest.py"),
               os.path.join("tests", "core", "test_distributed.py")}   # gloo collectives for its 2 processes
    bad = []
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "**", "*.py"), recursive=True)):
        if _rel(path) in allowed:
            continue
        for node in ast.walk(_parse(path)):
            if _is_call_to(node, "update") and ast.unparse(node.func).endswith("jax.config.update"):
                bad.append(f"{_rel(path)}:{node.lineno}")
    assert not bad, "\n".join(bad)


MAX_FUNCTION_LINES = 80   # issue 12: no function in jaxlab/ over 80 lines (docstring included)


def test_no_library_function_is_longer_than_80_lines():
    long = []
    for path in LIB:
        for node in ast.walk(_parse(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{_rel(path)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "split these functions:\n" + "\n".join(long)


# training-state containers still to fold into `loop.TrainState` (issue 12); the list only shrinks
STATE_ALLOW: set = set()


def _state_fields(node: ast.ClassDef) -> set:
    """Annotated field names of a class body (dataclass / NamedTuple fields)."""
    return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}


def test_one_train_state():
    """A class holding an optimiser state (a field `opt_state`, `opt_*` or `*_opt`) outside `core/loop.py` is a
    second training-state container: trainers use `jaxlab.core.loop.TrainState` (params, opt_state, step, key,
    extra). Optimiser-free carries (replay buffers, reservoirs) are not training states."""
    bad = []
    for path in LIB:
        if _rel(path) == os.path.join("jaxlab", "core", "loop.py"):
            continue
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ClassDef):
                opt = [f for f in _state_fields(node) if f == "opt_state" or f.startswith("opt_") or f.endswith("_opt")]
                if opt and f"{_rel(path)}:{node.name}" not in STATE_ALLOW:
                    bad.append(f"{_rel(path)}:{node.lineno} `{node.name}` ({', '.join(sorted(opt))})")
    assert not bad, "\n".join(bad)


# The one conversion of each config section into typed hyperparameters (the experiment calls it once); only
# these and the config/app layer (core/config.py, core/app.py) take a ConfigDict.
CONVERTERS = {"jaxlab/lm/train.py": {"model_config", "sft_hparams", "sft_spec"},
              "jaxlab/rl/train.py": {"rl_hparams"},
              "jaxlab/finance/train.py": {"from_config"}}
_CONFIG_LAYER = ("jaxlab/core/config.py", "jaxlab/core/app.py")
_CONFIG_NAMES = ("config", "section", "cfg_dict", "conf")


def test_no_library_function_receives_a_config_dict():
    """Issue 12 item 4: outside the converters, no function in jaxlab/ has a parameter annotated as a ConfigDict,
    nor an unannotated parameter with a config's name (a typed NamedTuple named `config` is fine)."""
    bad = []
    for path in LIB:
        rel = _rel(path).replace(os.sep, "/")
        if rel in _CONFIG_LAYER:
            continue
        for node in ast.walk(_parse(path)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name in CONVERTERS.get(rel, ()):
                continue
            a = node.args
            for arg in a.posonlyargs + a.args + a.kwonlyargs:
                ann = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                if "ConfigDict" in ann or (arg.arg in _CONFIG_NAMES and not ann):
                    bad.append(f"{rel}:{node.lineno} {node.name}({arg.arg}: {ann or '?'})")
    assert not bad, "library functions receiving a ConfigDict (type them or convert in the experiment):\n" + \
        "\n".join(bad)


def test_experiments_hand_the_model_cache_a_typed_spec():
    """Every call of the LM model cache or SFT front door in experiments/ (`lm.` / `cache.` load, load_or_train,
    model_key, make_train) passes `sft_spec(...)` or a variable named `spec`: a ConfigDict there is a TypeError
    at run time, on paths (the G-PAC LM half) that no quick test reaches."""
    root = os.path.join(os.path.dirname(__file__), "..", "experiments")
    bad = []
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        for node in ast.walk(_parse(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in ("lm", "cache")
                    and node.func.attr in ("load", "load_or_train", "model_key", "make_train") and node.args):
                continue
            a = node.args[0]
            ok = (isinstance(a, ast.Name) and a.id == "spec") or (
                isinstance(a, ast.Call) and ast.unparse(a.func).split(".")[-1] == "sft_spec")
            if not ok:
                bad.append(f"{os.path.basename(path)}:{node.lineno} {ast.unparse(node)[:80]}")
    assert not bad, "\n".join(bad)
