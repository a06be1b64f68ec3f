"""The one device and precision resolver (torch is imported only when these are called).

    resolve_device(device=None) -> torch.device      None / "auto": CUDA when available, else CPU
    resolve_precision(precision, device) -> dtype    the matmul dtype of a `--precision` name
"""
from .config import PRECISIONS
from .errors import InputError

#: Matmul dtype per precision name ("tf32" multiplies float32 tensors with TF32 allowed on CUDA).
_MATMUL_DTYPE_NAMES = {"float32": "float32", "tf32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def resolve_device(device=None):
    """`device` as a torch.device; None or "auto" means CUDA when available, else CPU.

    A malformed name, or a CUDA device on a machine without one (or with fewer devices), is an InputError
    naming --device.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"--device {device}: not a torch device ({' '.join(str(exc).split())})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def resolve_precision(precision, device=None):
    """The matmul torch dtype of `precision`, one of lpcache.config.PRECISIONS (InputError otherwise).

    Every precision is accepted on every device; `device` is where the products run, and there "tf32" differs
    from "float32" only on CUDA (the engine allows TF32 matmuls for it), with the same float32 dtype.
    """
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    return getattr(torch, _MATMUL_DTYPE_NAMES[precision])
