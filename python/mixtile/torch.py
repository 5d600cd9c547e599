"""Mixtile layers as a PyTorch operator: `torch.ops.mixtile.sparse_block`, a
torch.library.custom_op with a fake implementation, so torch.compile and torch.export accept
a model that calls it (the op stays opaque to them).

    block = mixtile.torch.SparseBlock(session, weights)   # weights: the tensors bound
    y = block(x)                                          # x [..., D] -> [..., D]

The op takes the tensors the session borrowed, so their producers stay in the graph and a
moved or re-allocated tensor is noticed: the session is rebound to the new memory.
"""

import itertools
import threading

import torch

from . import _core

__all__ = ["SparseBlock", "sparse_block"]

_BLOCKS = {}
_ids = itertools.count(1)
_lock = threading.Lock()


@torch.library.custom_op("mixtile::sparse_block", mutates_args=())
def sparse_block(x: torch.Tensor, block_id: int, weights: list[torch.Tensor]) -> torch.Tensor:
    """The compiled sparse block `block_id` on tokens x [..., D]; weights are its bound tensors."""
    block = _BLOCKS.get(block_id)
    if block is None:
        raise _core.MixtileError(f"no Mixtile block {block_id} (was it closed?)")
    return block._run(x, weights)


@sparse_block.register_fake
def _(x, block_id, weights):
    return torch.empty_like(x)


class SparseBlock(torch.nn.Module):
    """A compiled sparse block (Artifact of one layer) as a module: forward(x [..., D]).

    weights: {argument name: tensor} as the artifact names its weights; they are borrowed
    (not copied), and rebound if a tensor is replaced or moved in memory."""

    def __init__(self, artifact, weights, *, num_threads=0):
        super().__init__()
        self.artifact = artifact
        self.names = list(weights)
        self._tensors = [weights[n] for n in self.names]
        self.num_threads = num_threads
        self._bound = None
        self._session = None
        with _lock:
            self.block_id = next(_ids)
            _BLOCKS[self.block_id] = self

    def _bind(self, tensors):
        key = tuple((t.data_ptr(), t.dtype, tuple(t.shape)) for t in tensors)
        if key != self._bound:
            if self._session is not None:
                self._session.close()
            self._session = self.artifact.bind(dict(zip(self.names, tensors)),
                                               num_threads=self.num_threads)
            self._bound = key
        return self._session

    def _run(self, x, tensors):
        session = self._bind([t.detach() for t in tensors])
        shape = x.shape
        x2d = x.detach().reshape(-1, shape[-1])
        # The block's output has the tokens' shape, dtype and device: written straight into a
        # tensor torch allocated (64-byte aligned), no copy either way; on a GPU, on torch's
        # current stream.
        out = torch.empty(x2d.shape, dtype=x.dtype, device=x.device)
        session.run({"hidden_states": x2d}, out={"output": out})
        return out.reshape(shape)

    def forward(self, x):
        return torch.ops.mixtile.sparse_block(x, self.block_id, self._tensors)

    def close(self):
        with _lock:
            _BLOCKS.pop(self.block_id, None)
        if self._session is not None:
            self._session.close()
            self._session = None
