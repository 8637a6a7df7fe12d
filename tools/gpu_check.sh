#!/usr/bin/env bash
# The checks to run on the first GPU at hand, in one call; every figure goes to ONE JSON file.
#
#   tools/gpu_check.sh [cuda|cpu]        (default: cuda)
#
# Steps (each under `timeout`, each one's exit code and wall seconds recorded; a failed step does not
# stop the next):
#   1. python -m charrnn bench --device D --json            (bench) a table per cell: the book's loop, the
#                                                           scratch step and nn.* for rnn at hidden 512 (8.5),
#                                                           gru and lstm at 256 (9.1, 9.2), batch 32 x 35 steps;
#                                                           on CUDA the Trainer's step is a CUDA graph
#   2. ... --eager                                          (bench_eager) the same, the Trainer's step eager
#   3. python -m charrnn bench --device D --cell rnn --sweep --json   (sweep) ... the rnn at batch
#                                                           32/128/512 x hidden 256/512/1024
#   4. python -m charrnn train --device D --json            (train) the book's full recipe (500 epochs): wall
#                                                           time, final perplexity, tokens/s
#   5. python -m charrnn bench --device D --cell rnn --num-hiddens 256 --trials 16 --json   (trials16) and
#      ... --trials 64 (trials64): K trials one after another against the same K batched
#   6. pytest tests/models/test_cuda_graph.py               (cuda_graph_test) the CUDA-graph step against the
#                                                           eager one
#   7. pytest tests/models/test_gated_parity.py and the bench's book-against-scratch test
#                                                           (gated_parity_test) the scratch GRU and LSTM
#                                                           against the book's chapter 9 loop (the first on the
#                                                           CPU; the second on the device too, graph included)
#   8. pytest tests/tune/test_batched.py -k gpu                  (batched_gpu_test) each member of a batched run on
#                                                           the device equals its single run there
# The tests are recorded as missing where pytest is not installed.
# A GPU machine may have its own PyTorch and no package registry: the library needs torch alone, and the
# CLI adds SQLAlchemy and Alembic (its run store); neither imports streamlit or plotly. Carry a venv that has
# them. Python: $PYTHON if set, else .venv/bin/python if it imports torch, else python3.
#
# Variables (defaults: the full work, in both modes; on 2 CPU cores the cpu mode takes well over 10
# minutes, most of it the recipe and the gated cells' book loops, so lower EPOCHS and MINIBATCHES there):
#   OUT              folder for the JSON file (default: ./artifacts/gpu_check); the file is
#                    gpu_check_<mode>.json
#   CHARRNN_DATA_DIR folder holding timemachine.txt (default: shared/data in the repo if present,
#                    else ../shared/data next to the repo)
#   EPOCHS           epochs of the recipe in step 4 (default: 500)
#   MINIBATCHES      bench's timed minibatches in steps 1-3 and 5 (default: 50)
#   T_BENCH T_SWEEP T_TRAIN T_TEST T_PARITY   per-step timeouts in seconds (T_BENCH for bench, bench_eager,
#                    trials16 and trials64; T_TEST for the CUDA-graph and batched tests; T_PARITY for the
#                    gated parity tests, whose book loops run on the CPU). cuda: 50/80/90/40/60, so that
#                    with the environment's 15 the limits add up to 15 + 4 x 50 + 80 + 90 + 2 x 40 + 60 =
#                    525 s, and 575 s if every one of the 10 steps ignored SIGTERM and waited out its 5 s
#                    before SIGKILL: within one 10-minute call. cpu: 600/600/600/300/600.
#   STEPS            the steps to run, by name (default: all of them: bench bench_eager sweep train trials16
#                    trials64 cuda_graph_test gated_parity_test batched_gpu_test); the environment is always
#                    recorded
# CHARRNN_HOME is a temporary folder, removed at the end: the runs this records are thrown away.
set -uo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

mode="${1:-cuda}"
case "$mode" in
  cuda) defaults=(50 80 90 40 60) ;;
  cpu) defaults=(600 600 600 300 600) ;;
  *) echo "tools/gpu_check.sh: error: the device must be cuda or cpu, not '$mode'" >&2; exit 2 ;;
esac
T_BENCH="${T_BENCH:-${defaults[0]}}" T_SWEEP="${T_SWEEP:-${defaults[1]}}"
T_TRAIN="${T_TRAIN:-${defaults[2]}}" T_TEST="${T_TEST:-${defaults[3]}}" T_PARITY="${T_PARITY:-${defaults[4]}}"
EPOCHS="${EPOCHS:-500}" MINIBATCHES="${MINIBATCHES:-50}"
STEPS=" ${STEPS:-bench bench_eager sweep train trials16 trials64 cuda_graph_test gated_parity_test batched_gpu_test} "

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  py=.venv/bin/python
else
  py=python3
fi
if [ -z "${CHARRNN_DATA_DIR:-}" ]; then
  if [ -d shared/data ]; then CHARRNN_DATA_DIR="$repo/shared/data"; else CHARRNN_DATA_DIR="$(dirname "$repo")/shared/data"; fi
fi
out_dir="${OUT:-$repo/artifacts/gpu_check}"
mkdir -p "$out_dir"
out_file="$out_dir/gpu_check_$mode.json"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CHARRNN_DATA_DIR CHARRNN_HOME="$work/home" PYTHONUNBUFFERED=1
mkdir -p "$CHARRNN_HOME"

# step NAME TIMEOUT CMD...: stdout and stderr to $work/NAME.{out,err}; "NAME rc seconds" to $work/steps.
step() {
  local name="$1" limit="$2"
  shift 2
  if [ "$name" != environment ] && [[ "$STEPS" != *" $name "* ]]; then
    return
  fi
  echo "== $name (timeout ${limit}s)" >&2
  local t0 t1 rc
  t0="$(date +%s%N)"
  timeout --kill-after=5 "$limit" "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
  t1="$(date +%s%N)"
  echo "$name $rc $(((t1 - t0) / 1000000))" >>"$work/steps" # milliseconds
  echo "   exit $rc" >&2
}

: >"$work/steps"
step environment 15 "$py" -c '
import json, platform, torch
cuda = torch.cuda.is_available()
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), None)
print(json.dumps({
    "python": platform.python_version(),
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cuda_available": cuda,
    "device_count": torch.cuda.device_count() if cuda else 0,
    "device_name": torch.cuda.get_device_name(0) if cuda else cpu or platform.machine(),
    "cpu": cpu,
    "capability": ".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else None,
    "cpu_threads": torch.get_num_threads(),
}))'
bench=("$py" -m charrnn bench --device "$mode" --minibatches "$MINIBATCHES" --json)
step bench "$T_BENCH" "${bench[@]}"
step bench_eager "$T_BENCH" "${bench[@]}" --eager
step sweep "$T_SWEEP" "${bench[@]}" --cell rnn --sweep
step train "$T_TRAIN" "$py" -m charrnn train --device "$mode" --epochs "$EPOCHS" --json
step trials16 "$T_BENCH" "${bench[@]}" --cell rnn --num-hiddens 256 --trials 16
step trials64 "$T_BENCH" "${bench[@]}" --cell rnn --num-hiddens 256 --trials 64
for test in cuda_graph_test:tests/models/test_cuda_graph.py \
  gated_parity_test:"tests/models/test_gated_parity.py tests/bench/test_bench.py::test_the_books_loop_computes_the_losses_of_the_scratch_step" \
  batched_gpu_test:"tests/tune/test_batched.py -k gpu"; do
  name="${test%%:*}" limit="$T_TEST"
  [ "$name" = gated_parity_test ] && limit="$T_PARITY"
  if "$py" -c "import pytest" 2>/dev/null; then
    # CI=true: a missing text fails the test instead of skipping it (the conftest's rule for CI).
    # shellcheck disable=SC2086  # the tests' paths and a -k filter are several words on purpose
    step "$name" "$limit" env CI=true "$py" -m pytest ${test#*:} -q -rs -p no:cacheprovider
  elif [[ "$STEPS" == *" $name "* ]]; then
    echo "$name missing 0" >>"$work/steps"
  fi
done

# Assemble the one JSON file (stdlib only, so it runs even where torch is broken).
"$py" - "$work" "$out_file" "$mode" "$CHARRNN_DATA_DIR" "$py" "$EPOCHS" "$MINIBATCHES" <<'EOF'
import json, os, statistics, subprocess, sys, time

work, out_file, mode, data_dir, py, epochs, minibatches = sys.argv[1:]
MARKS = (1, 10, 50, 100, 200, 300, 400, 500)  # epochs whose perplexity the report keeps


def read(name, ext):
    try:
        with open(os.path.join(work, f"{name}.{ext}")) as f:
            return f.read()
    except OSError:
        return ""


def json_lines(text):
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass  # a stray non-JSON line, e.g. a warning
    return rows


def train_figures(rows):
    epochs_seen = [r for r in rows if "epoch" in r]
    final = next((r for r in rows if "run_id" in r), None)
    rates = [r["tokens_per_sec"] for r in epochs_seen[1:]]  # the first epoch warms up
    return {
        "epochs_run": len(epochs_seen),
        "final_perplexity": final["perplexity"] if final else None,
        "meets_book_bar_ppl_le_1.2": (final["perplexity"] <= 1.2) if final else None,
        "final_tokens_per_sec": final["tokens_per_sec"] if final else None,
        "median_epoch_tokens_per_sec": statistics.median(rates) if rates else None,
        "device": final["device"] if final else None,
        "samples": final["samples"] if final else None,
        "perplexity_by_epoch": {
            r["epoch"]: r["perplexity"] for r in epochs_seen if r["epoch"] in MARKS or r is epochs_seen[-1]
        },
    }


def git_commit():
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return git.stdout.strip() or None
    except OSError:
        return None


report = {
    "mode": mode,
    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "python_used": py,
    "git_commit": git_commit(),
    "data_dir": data_dir,
    "text_present": os.path.isfile(os.path.join(data_dir, "timemachine.txt")),
    "epochs": int(epochs),
    "minibatches": int(minibatches),
    "steps": {},
}
for line in open(os.path.join(work, "steps")):
    name, rc, ms = line.split()
    entry = {"exit_code": int(rc) if rc != "missing" else None, "wall_s": round(int(ms) / 1000, 2)}
    if rc == "missing":
        entry = {"exit_code": None, "wall_s": 0.0, "result": "pytest is not installed: not run"}
    elif int(rc) in (124, 137):
        entry["timed_out"] = True
    out, err = read(name, "out"), read(name, "err")
    if name in ("environment", "bench", "bench_eager", "sweep", "trials16", "trials64"):
        rows = json_lines(out)
        entry["result"] = rows[-1] if rows else None
    elif name == "train":
        entry["result"] = train_figures(json_lines(out))
    elif name.endswith("_test") and rc != "missing":
        entry["result"] = out.strip().splitlines()[-12:]
    if err.strip():  # a failure's message, or bench's note that it timed the fallback text
        entry["stderr_tail"] = err[-2000:]
    report["steps"][name] = entry
env = report["steps"].get("environment", {}).get("result") or {}
report["torch"], report["device_name"] = env.get("torch"), env.get("device_name")
report["all_passed"] = all(s["exit_code"] in (0, None) for s in report["steps"].values())
report["total_wall_s"] = round(sum(s["wall_s"] for s in report["steps"].values()), 1)
with open(out_file, "w") as f:
    json.dump(report, f, indent=1)
    f.write("\n")
print(f"wrote {out_file}: all steps passed: {report['all_passed']}, {report['total_wall_s']} s in all", file=sys.stderr)
EOF
