"""reuse_large_blocks: frame-sized arrays reused from frame to frame, memory bounded."""

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_large_blocks_reused_and_peak_unchanged():
    code = textwrap.dedent(
        """
        import resource, numpy as np
        from pyama_flow.memory import reuse_large_blocks

        def hwm_mb():
            return [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024

        def minor_faults():
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        def frames(n):  # what a step does per frame: a few 32 MB temporaries
            for _ in range(n):
                a = np.ones((2048, 2048), np.float64)
                b = a * 2
                del a, b

        frames(2)
        f0 = minor_faults()
        frames(20)
        before = minor_faults() - f0
        assert reuse_large_blocks()
        frames(2)
        base, f0 = hwm_mb(), minor_faults()
        frames(40)
        after = minor_faults() - f0
        print(before, after, hwm_mb() - base)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, after, growth = (float(v) for v in out.split())
    # fresh pages for every array of every frame without it (fewer than 8192 per
    # array where the kernel hands out huge pages) ...
    assert before > 20 * 2 * 100
    # ... and next to none with it, over twice as many frames; the peak stays put
    assert after < 0.01 * before
    assert growth < 5
