"""Detect the GPUs and host of this machine, behind a small backend interface.

``NvmlBackend`` asks NVML (through ``pynvml`` from nvidia-ml-py) on a real machine;
``ProfileBackend`` replays a recorded profile so the emulator, the demo and tests run the same
code path without a GPU. NVML failures become ``DetectionError`` subclasses whose messages say
what to do, because "Common detection failures typically stem from outdated drivers or incorrect
permissions" (Epoch 3 announcement) and operators need to know which.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Protocol

from gpufleet.hardware.report import GPUDevice, HardwareReport, HostInfo

# NVML return codes (nvml.h); used when a pynvml build lacks the constant.
_NVML_CODES = {
    "NVML_ERROR_UNINITIALIZED": 1,
    "NVML_ERROR_NOT_SUPPORTED": 3,
    "NVML_ERROR_NO_PERMISSION": 4,
    "NVML_ERROR_DRIVER_NOT_LOADED": 9,
    "NVML_ERROR_LIBRARY_NOT_FOUND": 12,
    "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
    "NVML_ERROR_GPU_IS_LOST": 15,
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH": 18,
}

# nvmlDeviceGetArchitecture() values (nvml.h NVML_DEVICE_ARCH_*).
NVML_ARCHITECTURES = {
    2: "kepler",
    3: "maxwell",
    4: "pascal",
    5: "volta",
    6: "turing",
    7: "ampere",
    8: "ada",
    9: "hopper",
    10: "blackwell",
}


def architecture_for_cc(major: int, minor: int) -> str:
    """The family a compute capability belongs to (used when NVML cannot name the architecture)."""
    if major == 7:
        return "turing" if minor >= 5 else "volta"
    if major == 8:
        return "ada" if minor == 9 else "ampere"
    return {
        3: "kepler",
        5: "maxwell",
        6: "pascal",
        9: "hopper",
        10: "blackwell",
        11: "blackwell",
        12: "blackwell",
    }.get(major, "unknown")


class DetectionError(RuntimeError):
    """Detection failed; ``str(err)`` is a complete, actionable message for a person."""

    exit_code: ClassVar[int] = 10
    code: ClassVar[str] = "DetectionFailed"
    hint: ClassVar[str] = "Check that the NVIDIA driver is installed and `nvidia-smi` works on this machine."

    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail}. {self.hint}")
        self.detail = detail


class NvmlLibraryNotFound(DetectionError):
    exit_code = 3
    code = "NvmlLibraryNotFound"
    hint = (
        "libnvidia-ml.so.1 was not found: install the NVIDIA driver (latest production branch); inside a "
        "container, run it with the NVIDIA container toolkit (runtimeClassName: nvidia or --gpus all) "
        "so the driver libraries are mounted"
    )


class DriverNotLoaded(DetectionError):
    exit_code = 4
    code = "DriverNotLoaded"
    hint = (
        "The NVIDIA kernel module is not loaded: run `sudo modprobe nvidia` or reboot after installing the "
        "driver, and check `dmesg | grep -i nvidia` (Secure Boot may be blocking an unsigned module)"
    )


class InsufficientPermissions(DetectionError):
    exit_code = 5
    code = "InsufficientPermissions"
    hint = (
        "This process may not query the GPUs: give it access to /dev/nvidia* (add the user to the `video` "
        "group, or run the node agent with the device plugin's GPU allocation), then retry"
    )


class DriverLibraryMismatch(DetectionError):
    exit_code = 6
    code = "DriverLibraryMismatch"
    hint = (
        "The NVIDIA user-space library and kernel module versions differ (usually a driver upgrade without "
        "a reboot): reboot the machine or reload the nvidia kernel modules"
    )


class GPULost(DetectionError):
    exit_code = 7
    code = "GPULost"
    hint = "A GPU fell off the bus: check `dmesg` for Xid errors, power and cooling, then reset or reboot"


class NoGPUsFound(DetectionError):
    exit_code = 8
    code = "NoGPUsFound"
    hint = (
        "NVML works but sees no GPU: check that the GPU is visible (`nvidia-smi -L`) and, in a container, "
        "that NVIDIA_VISIBLE_DEVICES or the device plugin gives it one"
    )


class NvmlError(DetectionError):
    exit_code = 9
    code = "NvmlError"


class ProfileNotFound(DetectionError):
    exit_code = 11
    code = "ProfileNotFound"
    hint = "Use one of the recorded profiles listed above (gpufleet.hardware.profiles.list_profiles())"


class DetectionBackend(Protocol):
    """Produces a report of the machine it runs on (or pretends to)."""

    def read(self) -> HardwareReport: ...


class ProfileBackend:
    """Replays a recorded profile (by name) or a given report."""

    def __init__(self, profile: str | HardwareReport) -> None:
        self._profile = profile

    def read(self) -> HardwareReport:
        if isinstance(self._profile, HardwareReport):
            return self._profile
        from gpufleet.hardware.profiles import load_profile

        try:
            return load_profile(self._profile)
        except KeyError as exc:
            raise ProfileNotFound(str(exc.args[0])) from exc


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_host_info(proc: Path = Path("/proc")) -> HostInfo:
    """CPU model, usable logical CPUs and total memory, from /proc on Linux with portable fallbacks."""
    cpu_model = ""
    try:
        for line in (proc / "cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                cpu_model = value.strip()
                break
    except OSError:
        pass
    cpu_model = cpu_model or platform.processor() or platform.machine() or "unknown"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    memory_mib = 0
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mib = int(line.split()[1]) // 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if memory_mib <= 0:
        try:
            memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        except (ValueError, OSError, AttributeError):
            memory_mib = 1
    return HostInfo(cpu_model=cpu_model, cpu_cores=max(cores, 1), memory_mib=max(memory_mib, 1))


class NvmlBackend:
    """Reads the machine through NVML. ``nvml`` may be any module-like object with pynvml's API (tests)."""

    def __init__(
        self,
        nvml: ModuleType | Any | None = None,
        host_reader: Callable[[], HostInfo] = read_host_info,
    ) -> None:
        self._nvml = nvml
        self._host_reader = host_reader

    def _module(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        try:
            return importlib.import_module("pynvml")
        except ImportError as exc:
            raise NvmlLibraryNotFound(
                "the Python package nvidia-ml-py (module pynvml) is not installed: pip install nvidia-ml-py"
            ) from exc

    def _translate(self, nvml: Any, exc: BaseException, doing: str) -> DetectionError:
        value = getattr(exc, "value", None)

        def code(name: str) -> int:
            return int(getattr(nvml, name, _NVML_CODES[name]))

        detail = f"NVML failed while {doing}: {exc}"
        if value == code("NVML_ERROR_LIBRARY_NOT_FOUND"):
            return NvmlLibraryNotFound(f"NVML library not found while {doing}")
        if value == code("NVML_ERROR_DRIVER_NOT_LOADED"):
            return DriverNotLoaded(f"NVIDIA driver not loaded while {doing}")
        if value == code("NVML_ERROR_NO_PERMISSION"):
            return InsufficientPermissions(f"permission denied while {doing}")
        if value == code("NVML_ERROR_LIB_RM_VERSION_MISMATCH"):
            return DriverLibraryMismatch(f"driver/library version mismatch while {doing}")
        if value == code("NVML_ERROR_GPU_IS_LOST"):
            return GPULost(f"GPU lost while {doing}")
        if value == code("NVML_ERROR_FUNCTION_NOT_FOUND"):
            return NvmlError(f"{detail} (the driver is older than this NVML binding; update the driver)")
        return NvmlError(detail)

    def read(self) -> HardwareReport:
        nvml = self._module()
        error_type: type[BaseException] = getattr(nvml, "NVMLError", Exception)
        doing = "initialising NVML"
        try:
            nvml.nvmlInit()
        except error_type as exc:
            raise self._translate(nvml, exc, doing) from exc
        try:
            doing = "reading the driver version"
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda_raw = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{cuda_raw // 1000}.{(cuda_raw % 1000) // 10}"
            doing = "counting GPUs"
            count = int(nvml.nvmlDeviceGetCount())
            devices = []
            for index in range(count):
                doing = f"reading GPU {index}"
                devices.append(self._device(nvml, error_type, index))
        except error_type as exc:
            raise self._translate(nvml, exc, doing) from exc
        finally:
            with contextlib.suppress(error_type):
                nvml.nvmlShutdown()
        if not devices:
            raise NoGPUsFound("NVML reports 0 GPUs")
        return HardwareReport(
            devices=devices, host=self._host_reader(), driver_version=driver, cuda_driver_version=cuda
        )

    def _device(self, nvml: Any, error_type: type[BaseException], index: int) -> GPUDevice:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        architecture = architecture_for_cc(int(major), int(minor))
        with contextlib.suppress(error_type, AttributeError):
            architecture = NVML_ARCHITECTURES.get(int(nvml.nvmlDeviceGetArchitecture(handle)), architecture)
        try:
            mig_enabled = bool(nvml.nvmlDeviceGetMigMode(handle)[0])
        except (error_type, AttributeError):
            mig_enabled = False  # NOT_SUPPORTED on GPUs without MIG
        return GPUDevice(
            index=index,
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            pci_device_id=(int(nvml.nvmlDeviceGetPciInfo(handle).pciDeviceId) >> 16) & 0xFFFF,
            memory_total_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024),
            compute_capability=f"{int(major)}.{int(minor)}",
            architecture=architecture,
            mig_enabled=mig_enabled,
        )


def detect(backend: DetectionBackend | None = None) -> HardwareReport:
    """Report this machine's GPUs and host; raises a ``DetectionError`` subclass when it cannot."""
    return (backend or NvmlBackend()).read()
