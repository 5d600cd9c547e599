"""Mixtile from Python: compile sparse MoE layers and whole MoE models, run them on numpy
arrays and torch tensors.

    import mixtile
    art = mixtile.compile("model/config.json", layer=1, dtype="bf16")   # a sparse block
    session = art.bind("model/")                 # a checkpoint file or directory, or a dict
    out = session(hidden_states=x)               # {"output": ...}, numpy in -> numpy out,
                                                 # torch in -> torch out
    model = mixtile.Model.from_pretrained("model/")           # the whole decoder
    logits = model.forward(ids, attention_mask)
    sequences = model.generate(ids, attention_mask, max_new_tokens=32)

Inputs are borrowed, not copied (the run reads the caller's memory); results are copied out
of the session into new arrays. A contiguous tensor of the expected dtype is used in place; a
non-contiguous one is copied first; a wrong dtype, shape or device raises MixtileError with
the runtime's message.
"""

from ._core import (  # noqa: F401
    Artifact,
    MixtileError,
    Model,
    Session,
    compile,
    home,
)

__version__ = "0.1.0"
__all__ = ["Artifact", "MixtileError", "Model", "Session", "compile", "home", "__version__"]
