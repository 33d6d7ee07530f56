"""Noise of the torch backend: draw the mode box on the host, copy only the box to the device.

Only the (B, 2K+1, K+1) box of the noise sampler is non-zero, a few percent of the
(B, n, n//2+1) spectrum at n >= 128: it is drawn into a host buffer (page-locked on CUDA, so the
copy is a true asynchronous DMA), copied with ``non_blocking`` into a device box and scattered
on the device into a zero spectrum whose other modes are never touched. The values are those of
the numpy backends, bit for bit.

Two host buffers alternate: before one is refilled, the event recorded after its last copy is
awaited. That wait covers at most the work queued up to the copy two steps ago, so the host
draws step k+1's noise while the device still runs step k (no per-step sync).
"""

from __future__ import annotations

from diffclosure.solver.noise import NoiseSampler


class DeviceNoise:
    """rfft2(eta) of one batch size on a torch backend's device, refilled by :meth:`fill`."""

    def __init__(self, sampler: NoiseSampler, backend, batch: int):
        import torch

        n, K = sampler.grid.n, sampler.K
        self.sampler, self.device = sampler, backend.device
        self.cuda = backend.device.type == "cuda"
        box = (batch, 2 * K + 1, K + 1)
        self.host = [torch.zeros(box, dtype=torch.complex128, pin_memory=self.cuda)
                     for _ in range(2)]
        self.host_np = [h.numpy() for h in self.host]  # numpy views sharing the memory
        self.events = [None, None]
        self.turn = 0
        self.box = torch.zeros(box, dtype=torch.complex128, device=backend.device)
        self.full = backend.zeros((batch, n, n // 2 + 1), complex_=True)

    def fill(self, rngs):
        import torch

        i, self.turn = self.turn, 1 - self.turn
        if self.events[i] is not None:
            self.events[i].synchronize()  # the copy that last read host[i] is done
        self.sampler.sample_box(rngs, out=self.host_np[i])
        self.box.copy_(self.host[i], non_blocking=self.cuda)
        if self.cuda:
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(self.device))
            self.events[i] = ev
        # Same stream: the scatter runs after the copy, the next step's kernels after both.
        self.sampler.scatter(self.box, self.full)
        return self.full
