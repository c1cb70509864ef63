#!/usr/bin/env bash
# One prepared run of the benchmarks on a GPU machine (issue 19 item 7): Kalman up to T = 65536, KPO vs GRPO,
# decoding tokens/s, Brax mjx at 4096 envs. Each benchmark runs at --size=gpu under its own time limit and writes
# its JSON (absolute times, fresh compiles, the device's limits) and its log to $OUT; one failing benchmark does
# not stop the others. Commit the JSONs under results/bench/gpu/.
#
# The device machine's python3 (3.12) has jax with CUDA, flax, optax, chex and orbax but not brax, mujoco,
# mujoco-mjx, ml_collections and a few of their needs; they travel as wheels in the git-ignored .whl folder:
#     bash benchmarks/gpu_suite.sh --fetch-wheels    # here: downloads them into .whl (34 MB)
#     echo /.whl/ >> .git/info/exclude               # once, so that .whl stays out of git
# then, on the device machine (carry .whl):
#     bash benchmarks/gpu_suite.sh                   # OUT defaults to results/bench/gpu
# Here, to check the plumbing on CPU (brax_rollout's tiny size runs past its limit on CPU; the rest take 1 min):
#     SIZE=tiny PYTHON=.venv/bin/python OUT=/tmp/gpu_suite bash benchmarks/gpu_suite.sh
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fetch-wheels" ]; then
  exec "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    brax==0.14.2 mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 mujoco-mjx==3.17.0 ml_collections==1.1.0 \
    trimesh==5.2.0 jaxopt==0.8.5 glfw==2.11.0 pyopengl==3.1.10 websockets==17.4
fi
OUT=${OUT:-results/bench/gpu}
SIZE=${SIZE:-gpu}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
if ! "$PYTHON" -c "import brax, mujoco.mjx, ml_collections" 2> /dev/null && ls .whl/*.whl > /dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing the carried wheels failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# name and time limit in seconds (at most 7.7 minutes in all, inside one 10-minute device call)
for entry in kalman:80 policy_loss:90 lm_sampling:90 brax_rollout:200; do
  name=${entry%%:*}; limit=${entry##*:}
  start=$(date +%s)
  timeout "$limit" "$PYTHON" "benchmarks/$name.py" --size="$SIZE" --out="$OUT/$name.json" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc after $(( $(date +%s) - start )) s (limit $limit s)"
  [ $rc -eq 0 ] || tail -5 "$OUT/$name.log"
done
