"""The devices this machine offers the engine (`misr devices`)."""

from __future__ import annotations

from typing import Any


def list_devices() -> dict[str, Any]:
    """torch's version, whether CUDA works, and every device (CPU first, then each GPU)."""
    import torch

    devices: list[dict[str, Any]] = [{"id": "cpu", "name": f"CPU ({torch.get_num_threads()} threads)"}]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"id": f"cuda:{index}", "name": props.name,
                            "memory_mb": props.total_memory // 2 ** 20})
    return {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "devices": devices}
