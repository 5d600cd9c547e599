"""What check_api.py and check_hf.py share: one line per check ("ok" / "FAIL"), the relative
L2 error of numpy arrays or torch tensors, and the rule that a refusal is a MixtileError."""

import numpy as np

import mixtile

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def _float64(x):
    if hasattr(x, "detach"):  # a torch tensor (bf16 included)
        x = x.detach().double().cpu().numpy()
    return np.asarray(x, np.float64)


def rel(a, b):
    a, b = _float64(a), _float64(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def refused(call, needle, what):
    """`call` must raise MixtileError whose message holds `needle`; anything else fails."""
    try:
        call()
    except mixtile.MixtileError as e:
        check(needle in str(e), f"{what}: MixtileError '{str(e)[:150]}'")
        return
    except Exception as e:  # noqa: BLE001 - the point: only MixtileError is acceptable
        check(False, f"{what}: raised {type(e).__name__}: {e}")
        return
    check(False, f"{what}: no error")


def summary():
    """Prints the count of failed checks; the exit status."""
    print(f"{len(failures)} failed")
    return 1 if failures else 0
