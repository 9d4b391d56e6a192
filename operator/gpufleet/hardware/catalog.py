"""The GPU catalog: which NVIDIA GPUs gpufleet knows, loaded from the versioned ``catalog.yaml``.

The catalog is data, not code, so adding a GPU is a reviewed one-entry change. Loading validates
every entry (shapes, hex PCI ids, architecture vs compute capability, unique names and ids) so a
bad edit fails at import time in tests instead of blocking real GPUs in production.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gpufleet.hardware.report import cc_tuple

Segment = Literal["datacenter", "workstation", "consumer"]


def gfd_product_label(nvml_name: str) -> str:
    """The ``nvidia.com/gpu.product`` value GPU Feature Discovery derives from an NVML name."""
    return "-".join(nvml_name.split())


def _parse_pci_id(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"PCI device id must be a hex string like '0x2684', got {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        try:
            result = int(value, 16)
        except ValueError as exc:
            raise ValueError(f"PCI device id must be a hex string like '0x2684', got {value!r}") from exc
    else:
        raise ValueError(f"PCI device id must be a hex string like '0x2684', got {value!r}")
    if not 0 <= result <= 0xFFFF:
        raise ValueError(f"PCI device id {value!r} is not a 16-bit value")
    return result


class GPUModel(BaseModel):
    """One GPU product as NVML reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    nvml_names: tuple[str, ...] = Field(min_length=1)
    pci_device_ids: tuple[int, ...] = Field(min_length=1)
    vram_mib: int = Field(gt=0)
    vram_mib_range: tuple[int, int] | None = None
    compute_capability: str
    architecture: str
    segment: Segment
    mig_capable: bool = False
    gfd_product: str = ""

    @field_validator("pci_device_ids", mode="before")
    @classmethod
    def _hex_ids(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return tuple(_parse_pci_id(v) for v in value)
        return value

    @field_validator("compute_capability")
    @classmethod
    def _cc(cls, value: str) -> str:
        cc_tuple(value)
        return value

    @model_validator(mode="after")
    def _derive(self) -> GPUModel:
        if not self.gfd_product:
            object.__setattr__(self, "gfd_product", gfd_product_label(self.nvml_names[0]))
        if self.vram_mib_range is not None:
            low, high = self.vram_mib_range
            if not 0 < low <= self.vram_mib <= high:
                raise ValueError(
                    f"{self.key}: vram_mib_range {list(self.vram_mib_range)} "
                    f"must contain vram_mib {self.vram_mib}"
                )
        return self

    @property
    def cc(self) -> tuple[int, int]:
        return cc_tuple(self.compute_capability)

    def vram_bounds(self, tolerance_pct: float) -> tuple[int, int]:
        """Accepted [low, high] MiB for a detected total: the explicit range, else vram_mib ± tolerance."""
        if self.vram_mib_range is not None:
            return self.vram_mib_range
        delta = self.vram_mib * tolerance_pct / 100.0
        return int(self.vram_mib - delta), int(self.vram_mib + delta + 0.999999)

    def gfd_products(self) -> tuple[str, ...]:
        """Every label GFD may publish for this product (one per NVML spelling)."""
        return tuple(dict.fromkeys(gfd_product_label(n) for n in self.nvml_names))


class Catalog(BaseModel):
    """The whole catalog with O(1) look-ups by NVML name, PCI id and GFD label."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1]
    catalog_version: str = Field(min_length=1)
    vram_tolerance_pct: float = Field(gt=0, le=20)
    architectures: dict[str, tuple[str, ...]]
    gpus: tuple[GPUModel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        problems: list[str] = []
        seen_keys: set[str] = set()
        seen_names: dict[str, str] = {}
        seen_ids: dict[int, str] = {}
        seen_labels: dict[str, str] = {}
        for gpu in self.gpus:
            if gpu.key in seen_keys:
                problems.append(f"duplicate key {gpu.key!r}")
            seen_keys.add(gpu.key)
            allowed = self.architectures.get(gpu.architecture)
            if allowed is None:
                problems.append(f"{gpu.key}: unknown architecture {gpu.architecture!r}")
            elif gpu.compute_capability not in allowed:
                problems.append(
                    f"{gpu.key}: compute capability {gpu.compute_capability} is not {gpu.architecture} "
                    f"(allowed {', '.join(allowed)})"
                )
            for name in gpu.nvml_names:
                if name.casefold() in seen_names:
                    problems.append(
                        f"{gpu.key}: NVML name {name!r} also used by {seen_names[name.casefold()]}"
                    )
                seen_names[name.casefold()] = gpu.key
            for pci in gpu.pci_device_ids:
                if pci in seen_ids:
                    problems.append(f"{gpu.key}: PCI id 0x{pci:04x} also used by {seen_ids[pci]}")
                seen_ids[pci] = gpu.key
            for label in gpu.gfd_products():
                if label in seen_labels and seen_labels[label] != gpu.key:
                    problems.append(f"{gpu.key}: GFD label {label!r} also used by {seen_labels[label]}")
                seen_labels[label] = gpu.key
        if problems:
            raise ValueError("inconsistent GPU catalog: " + "; ".join(problems))
        return self

    @functools.cached_property
    def _by_name(self) -> dict[str, GPUModel]:
        return {name.casefold(): gpu for gpu in self.gpus for name in gpu.nvml_names}

    @functools.cached_property
    def _by_pci(self) -> dict[int, GPUModel]:
        return {pci: gpu for gpu in self.gpus for pci in gpu.pci_device_ids}

    @functools.cached_property
    def _by_label(self) -> dict[str, GPUModel]:
        return {label: gpu for gpu in self.gpus for label in gpu.gfd_products()}

    @functools.cached_property
    def _by_key(self) -> dict[str, GPUModel]:
        return {gpu.key: gpu for gpu in self.gpus}

    def by_name(self, nvml_name: str) -> GPUModel | None:
        """Look up by NVML product name (case and surrounding whitespace ignored)."""
        return self._by_name.get(nvml_name.strip().casefold())

    def by_pci_id(self, pci_device_id: int) -> GPUModel | None:
        """Look up by the 16-bit PCI device id."""
        return self._by_pci.get(pci_device_id)

    def by_gfd_product(self, label: str) -> GPUModel | None:
        """Look up by the GFD ``nvidia.com/gpu.product`` label (a ``-SHARED`` suffix is ignored)."""
        base = label.removesuffix("-SHARED")
        return self._by_label.get(base)

    def by_key(self, key: str) -> GPUModel | None:
        return self._by_key.get(key)

    def find(self, text: str) -> GPUModel | None:
        """Resolve what a person typed: a key, an NVML name or a GFD label."""
        return self.by_key(text.strip().lower()) or self.by_name(text) or self.by_gfd_product(text.strip())


def parse_catalog(data: Any) -> Catalog:
    """Validate catalog data (already parsed from YAML/JSON)."""
    return Catalog.model_validate(data)


@functools.cache
def load_catalog() -> Catalog:
    """The catalog shipped with gpufleet, parsed once per process."""
    text = resources.files("gpufleet.hardware").joinpath("catalog.yaml").read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text))


# ------------------------------------------------------------------ names people type


def normalize_gpu_name(text: str) -> str:
    """One spelling for the names people see: NVML's, GFD's, the demo's, catalog keys.

    Case, ``-``/``_`` versus spaces, a leading ``NVIDIA`` and GFD's ``-SHARED`` suffix are
    ignored, so ``NVIDIA-GeForce-RTX-4090``, ``GeForce RTX 4090`` and ``nvidia geforce rtx 4090``
    are the same GPU.
    """
    words = text.replace("-", " ").replace("_", " ").casefold().split()
    if words[:1] == ["nvidia"]:
        words = words[1:]
    if words[-1:] == ["shared"]:
        words = words[:-1]
    return " ".join(words)


def gpu_aliases(gpu: GPUModel) -> tuple[str, ...]:
    """Every normalised name a person may use for ``gpu`` (key, NVML names, GFD labels)."""
    names = (gpu.key, *gpu.nvml_names, *gpu.gfd_products())
    return tuple(dict.fromkeys(normalize_gpu_name(n) for n in names))


def resolve_gpu(catalog: Catalog, text: str) -> GPUModel | None:
    """The catalog GPU ``text`` names (exact look-ups first, then the normalised spelling)."""
    exact = catalog.find(text)
    if exact is not None:
        return exact
    wanted = normalize_gpu_name(text)
    if not wanted:
        return None
    hits = {gpu.key: gpu for gpu in catalog.gpus if wanted in gpu_aliases(gpu)}
    return next(iter(hits.values())) if len(hits) == 1 else None


def suggest_gpus(catalog: Catalog, text: str, limit: int = 5) -> list[str]:
    """Real near matches for an unknown name, as NVML spells them, best first.

    GPUs whose names contain every word typed come first (``A100`` lists the A100 variants, not
    ``A10``), then close spellings by similarity.
    """
    import difflib

    wanted = normalize_gpu_name(text)
    words = wanted.split()
    if not words:
        return []
    contains: list[str] = []
    for gpu in catalog.gpus:
        for alias in gpu_aliases(gpu):
            alias_words = alias.split()
            if all(any(a == w or (len(w) > 2 and a.startswith(w)) for a in alias_words) for w in words):
                contains.append(gpu.nvml_names[0])
                break
    if contains:
        return contains[:limit]
    by_alias = {alias: gpu.nvml_names[0] for gpu in catalog.gpus for alias in gpu_aliases(gpu)}
    close = difflib.get_close_matches(wanted, list(by_alias), n=limit * 3, cutoff=0.6)
    return list(dict.fromkeys(by_alias[c] for c in close))[:limit]
