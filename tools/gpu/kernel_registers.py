"""Registers, stack and spills of Reel's CUDA kernels, without a GPU.

Compiles one kernel file of Sources/ReelCUDA/Kernels with NVRTC (as CUDADevice does, for compute_90) to
PTX, then runs `ptxas -v -arch=sm_90` on it and prints one line per kernel. NVRTC and ptxas come from
the `nvidia-cuda-nvrtc-cu12` and `nvidia-cuda-nvcc-cu12` wheels (PyPI), unpacked once into a cache folder.

    python3 tools/gpu/kernel_registers.py norm.cu                 # every kernel of norm.cu
    python3 tools/gpu/kernel_registers.py fused.cu rms_norm_rope  # kernels whose name contains a word

Registers decide occupancy: at 256 threads a block, more than 64 registers a thread leaves fewer than
4 blocks (32 warps) on an SM (see docs/perf-notes.md, session 5: the row kernels).
"""
import ctypes
import glob
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "Sources", "ReelCUDA", "Kernels")
CACHE = os.environ.get("REEL_TOOLS_CACHE", os.path.expanduser("~/.cache/reel-cuda-tools"))
WHEELS = ["nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvcc-cu12"]
# As KernelCompiler.options, with a virtual architecture (PTX for ptxas) instead of a real one.
OPTIONS = [b"--gpu-architecture=compute_90", b"--std=c++17", b"-default-device", b"--extra-device-vectorization"]


def tools():
    nvrtc = os.path.join(CACHE, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so.12")
    ptxas = os.path.join(CACHE, "nvidia", "cuda_nvcc", "bin", "ptxas")
    if not (os.path.exists(nvrtc) and os.path.exists(ptxas)):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", CACHE, *WHEELS], check=True)
        for wheel in glob.glob(os.path.join(CACHE, "*.whl")):
            zipfile.ZipFile(wheel).extractall(CACHE)
        os.chmod(ptxas, 0o755)
    return nvrtc, ptxas


def ptx(nvrtc_path, name):
    lib = ctypes.CDLL(nvrtc_path)
    src = open(os.path.join(KERNELS, name), "rb").read()
    headers = [h for h in sorted(os.listdir(KERNELS)) if h.endswith(".cuh")]
    contents = (ctypes.c_char_p * len(headers))(*[open(os.path.join(KERNELS, h), "rb").read() for h in headers])
    names = (ctypes.c_char_p * len(headers))(*[h.encode() for h in headers])
    prog = ctypes.c_void_p()
    if lib.nvrtcCreateProgram(ctypes.byref(prog), src, name.encode(), len(headers), contents, names) != 0:
        sys.exit("nvrtcCreateProgram failed")
    status = lib.nvrtcCompileProgram(prog, len(OPTIONS), (ctypes.c_char_p * len(OPTIONS))(*OPTIONS))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    if status != 0:
        sys.exit(f"NVRTC could not compile {name}:\n{log.value.decode()}")
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    text = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(prog, text)
    return text.value


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name, words = sys.argv[1], sys.argv[2:]
    if not os.path.exists(os.path.join(KERNELS, name)):
        sys.exit(f"no kernel file {name} in {KERNELS}")
    nvrtc, ptxas = tools()
    out = os.path.join(CACHE, name + ".ptx")
    with open(out, "wb") as f:
        f.write(ptx(nvrtc, name))
    report = subprocess.run([ptxas, "-v", "-arch=sm_90", out, "-o", os.devnull], capture_output=True, text=True)
    if report.returncode != 0:
        sys.exit(report.stderr)
    kernel, spills = None, ""
    for line in report.stderr.splitlines():
        if "Compiling entry function" in line:
            kernel = line.split("'")[1]
        elif "spill" in line:
            spills = line.split("info    :")[-1].strip()
        elif "Used" in line and kernel and (not words or any(w in kernel for w in words)):
            print(f"{kernel:32s} {line.split('info    :')[-1].strip()}; {spills}")


if __name__ == "__main__":
    main()
