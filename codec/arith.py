"""exp, tanh and sigmoid built from + - * / only, so every machine computes the same bits.

A range decoder must see exactly the probabilities the encoder used (a 1e-12 difference already
breaks decoding). Additions, multiplications and divisions are exact IEEE-754 operations
everywhere, but libm's exp/tanh differ between C libraries and versions in the last bit. So the
codec's engine never calls them: `exp_` reduces x = n*ln2 + r (n rounded to nearest by the
1.5*2^52 shifter, Cody-Waite split of ln2 so n*LN2_HI is exact), sums the Taylor series of e^r
(|r| <= ln2/2, degree 11: relative error < 1e-14) and scales by 2^n built from its bit pattern.
numba compiles these without fastmath, so LLVM neither reorders nor fuses (FMA) operations; it
may run several samples per SIMD instruction, which computes each sample exactly as alone.

The functions work in place on one row of a [..., batch] array (samples innermost, so the loops
vectorise); `tmp` rows are scratch space of at least the row's length. Accuracy is far beyond
need (~1e-15 absolute for tanh/sigmoid); determinism is the point.
"""
import math

import numba
import numpy as np

_LN2_HI = 6.93147180369123816490e-01   # 0x3fe62e42fee00000: low 21 bits zero
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_EXP_CLAMP = 80.0                        # e^-80 ~ 1.8e-35: far below anything that matters here
_SHIFTER = 6755399441055744.0            # 1.5 * 2^52: x + _SHIFTER rounds x to an integer
_SHIFTER_BITS = np.int64(0x4338000000000000)
_EXP_BIAS_BITS = np.int64(1023)
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11 = (1.0 / math.factorial(n) for n in range(2, 12))

_JIT = dict(inline='always', nogil=True, cache=True)


@numba.njit(**_JIT)
def exp_(v, tmp):
  """v[:] = e^v[:] (arguments clamped to [-80, 80])."""
  n = v.shape[0]
  bits = tmp.view(np.int64)
  for b in range(n):
    x = v[b]
    x = x if x < _EXP_CLAMP else _EXP_CLAMP
    x = x if x > -_EXP_CLAMP else -_EXP_CLAMP
    shifted = x * _INV_LN2 + _SHIFTER
    nf = shifted - _SHIFTER
    r = (x - nf * _LN2_HI) - nf * _LN2_LO
    p = C11
    p = p * r + C10
    p = p * r + C9
    p = p * r + C8
    p = p * r + C7
    p = p * r + C6
    p = p * r + C5
    p = p * r + C4
    p = p * r + C3
    p = p * r + C2
    p = p * r + 1.0
    p = p * r + 1.0
    v[b] = p
    tmp[b] = shifted
  for b in range(n):  # 2^n: the integer n sits in the low mantissa bits of `shifted`
    bits[b] = (bits[b] - _SHIFTER_BITS + _EXP_BIAS_BITS) << 52
  for b in range(n):
    v[b] *= tmp[b]


@numba.njit(**_JIT)
def tanh_(v, tmp, tmp2):
  """v[:] = tanh(v[:]) = sign(v) (1 - e^-2|v|) / (1 + e^-2|v|)."""
  n = v.shape[0]
  for b in range(n):
    tmp2[b] = -2.0 * abs(v[b])
  exp_(tmp2[:n], tmp)
  for b in range(n):
    e = tmp2[b]
    t = (1.0 - e) / (1.0 + e)
    v[b] = t if v[b] >= 0.0 else -t


@numba.njit(**_JIT)
def sigmoid_(v, tmp, tmp2):
  """v[:] = 1 / (1 + e^-v[:]), evaluated via e^-|v| so it never overflows."""
  n = v.shape[0]
  for b in range(n):
    tmp2[b] = -abs(v[b])
  exp_(tmp2[:n], tmp)
  for b in range(n):
    e = tmp2[b]
    num = 1.0 if v[b] >= 0.0 else e
    v[b] = num / (1.0 + e)
