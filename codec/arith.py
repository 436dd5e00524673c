"""exp, tanh and sigmoid in float32 from + - * / and bit moves only: every machine gets the same bits.

A range decoder must see exactly the probabilities the encoder used (a 1e-12 difference already
breaks decoding). Additions, multiplications and divisions are exact IEEE-754 operations
everywhere, but libm's exp/tanh differ between C libraries and versions in the last bit. So the
codec's engine never calls them. `exp_s` reduces x = n*ln2 + r (n rounded to nearest by adding
the 1.5*2^23 shifter; Cody-Waite split of ln2, so n*LN2_HI is exact), sums the Taylor series of
e^r to degree 7 in Estrin's order (|r| <= ln2/2: relative error ~1e-7, float32's own precision)
and scales by 2^n, built from the bits of the shifted value. numba compiles all this without
fastmath, so LLVM neither reorders nor fuses (FMA) the operations; `error_model='numpy'` only
drops the division-by-zero check (none can occur: 1 + e >= 1), which lets the loops use SIMD.
A SIMD lane computes exactly what a scalar would, so results never depend on how many samples
share a loop.

The engine works in float32 (8 samples per AVX2 instruction); every constant below is a
float32, because a float64 literal would silently promote numba's arithmetic to float64.
`tanh_` / `sigmoid_` work in place on one row of a [..., batch] array (samples innermost).
"""
import math

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

F32 = np.float32
ZERO, HALF, ONE, TWO = F32(0.0), F32(0.5), F32(1.0), F32(2.0)
_LN2_HI = F32(0.693359375)             # 9 significant bits: n * _LN2_HI is exact
_LN2_LO = F32(-2.12194440e-4)
_INV_LN2 = F32(1.44269504088896341)
_EXP_CLAMP = F32(80.0)                   # e^-80 = 2^-115.4: still a normal float32
_SHIFTER = F32(12582912.0)               # 1.5 * 2^23: x + _SHIFTER rounds x to an integer ...
_SHIFTER_BITS = np.int64(0x4B400000)     # ... held in the low bits of these bits
_EXP_BIAS = np.int64(127)
C2, C3, C4, C5, C6, C7 = (F32(1.0 / math.factorial(n)) for n in range(2, 8))

JIT_OPTIONS = dict(nogil=True, cache=True, error_model='numpy')


@intrinsic
def _float_bits(typingctx, value):  # pylint: disable=unused-argument
  """The IEEE-754 bit pattern of a float32 (an LLVM bitcast), widened to int64 for numba."""
  def codegen(context, builder, signature, args):
    bits = builder.bitcast(args[0], context.get_value_type(types.int32))
    return builder.sext(bits, context.get_value_type(types.int64))
  return types.int64(types.float32), codegen


@intrinsic
def _bits_float(typingctx, value):  # pylint: disable=unused-argument
  """The float32 whose IEEE-754 bit pattern is the low 32 bits of this int64."""
  def codegen(context, builder, signature, args):
    bits = builder.trunc(args[0], context.get_value_type(types.int32))
    return builder.bitcast(bits, context.get_value_type(types.float32))
  return types.float32(types.int64), codegen


@numba.njit(inline='always', **JIT_OPTIONS)
def exp_s(x):
  """e^x for a float32 x clamped to [-80, 80]."""
  x = x if x < _EXP_CLAMP else _EXP_CLAMP
  x = x if x > -_EXP_CLAMP else -_EXP_CLAMP
  shifted = x * _INV_LN2 + _SHIFTER
  n = shifted - _SHIFTER
  r = (x - n * _LN2_HI) - n * _LN2_LO
  r2 = r * r
  p = ((ONE + r) + r2 * (C2 + C3 * r)) + (r2 * r2) * ((C4 + C5 * r) + r2 * (C6 + C7 * r))
  return p * _bits_float((_float_bits(shifted) - _SHIFTER_BITS + _EXP_BIAS) << 23)


@numba.njit(inline='always', **JIT_OPTIONS)
def tanh_s(x):
  """sign(x) (1 - e^-2|x|) / (1 + e^-2|x|)."""
  e = exp_s(-TWO * abs(x))
  t = (ONE - e) / (ONE + e)
  return t if x >= ZERO else -t


@numba.njit(inline='always', **JIT_OPTIONS)
def sigmoid_s(x):
  """1 / (1 + e^-x), through e^-|x| so it never overflows."""
  e = exp_s(-abs(x))
  return (ONE if x >= ZERO else e) / (ONE + e)


@numba.njit(**JIT_OPTIONS)
def tanh_(v):
  for b in range(v.shape[0]):
    v[b] = tanh_s(v[b])


@numba.njit(**JIT_OPTIONS)
def sigmoid_(v):
  for b in range(v.shape[0]):
    v[b] = sigmoid_s(v[b])
