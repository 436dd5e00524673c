"""exp, tanh and sigmoid built from + - * / and bit moves only, so every machine gets the same bits.

A range decoder must see exactly the probabilities the encoder used (a 1e-12 difference already
breaks decoding). Additions, multiplications and divisions are exact IEEE-754 operations
everywhere, but libm's exp/tanh differ between C libraries and versions in the last bit. So the
codec's engine never calls them. `exp_s` reduces x = n*ln2 + r (n rounded to nearest by adding
the 1.5*2^52 shifter; Cody-Waite split of ln2, so n*LN2_HI is exact), sums the Taylor series of
e^r to degree 11 in Estrin's order (|r| <= ln2/2: relative error < 1e-14) and scales by 2^n,
built from the bits of the shifted value. numba compiles all this without fastmath, so LLVM
neither reorders nor fuses (FMA) the operations; `error_model='numpy'` only drops the
division-by-zero check (none can occur: 1 + e >= 1), which lets the loops use SIMD. A SIMD lane
computes exactly what a scalar would, so results never depend on how many samples share a loop.

`tanh_` / `sigmoid_` work in place on one row of a [..., batch] array (samples innermost).
Accuracy (~1e-15 absolute) is far beyond need; determinism is the point.
"""
import math

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

_LN2_HI = 6.93147180369123816490e-01   # 0x3fe62e42fee00000: low 21 bits zero
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
_EXP_CLAMP = 80.0                        # e^-80 ~ 1.8e-35: far below anything that matters here
_SHIFTER = 6755399441055744.0            # 1.5 * 2^52: x + _SHIFTER rounds x to an integer ...
_SHIFTER_BITS = np.int64(0x4338000000000000)  # ... held in the low bits of these bits
_EXP_BIAS = np.int64(1023)
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11 = (1.0 / math.factorial(n) for n in range(2, 12))

JIT_OPTIONS = dict(nogil=True, cache=True, error_model='numpy')


@intrinsic
def _float_bits(typingctx, value):  # pylint: disable=unused-argument
  """The IEEE-754 bit pattern of a float64, as int64 (an LLVM bitcast: no conversion)."""
  def codegen(context, builder, signature, args):
    return builder.bitcast(args[0], context.get_value_type(types.int64))
  return types.int64(types.float64), codegen


@intrinsic
def _bits_float(typingctx, value):  # pylint: disable=unused-argument
  """The float64 whose IEEE-754 bit pattern is this int64."""
  def codegen(context, builder, signature, args):
    return builder.bitcast(args[0], context.get_value_type(types.float64))
  return types.float64(types.int64), codegen


@numba.njit(inline='always', **JIT_OPTIONS)
def exp_s(x):
  """e^x for x clamped to [-80, 80]."""
  x = x if x < _EXP_CLAMP else _EXP_CLAMP
  x = x if x > -_EXP_CLAMP else -_EXP_CLAMP
  shifted = x * _INV_LN2 + _SHIFTER
  n = shifted - _SHIFTER
  r = (x - n * _LN2_HI) - n * _LN2_LO
  r2 = r * r
  r4 = r2 * r2
  p = (((1.0 + r) + r2 * (C2 + C3 * r))
       + r4 * (((C4 + C5 * r) + r2 * (C6 + C7 * r))
               + r4 * ((C8 + C9 * r) + r2 * (C10 + C11 * r))))
  return p * _bits_float((_float_bits(shifted) - _SHIFTER_BITS + _EXP_BIAS) << 52)


@numba.njit(inline='always', **JIT_OPTIONS)
def tanh_s(x):
  """sign(x) (1 - e^-2|x|) / (1 + e^-2|x|)."""
  e = exp_s(-2.0 * abs(x))
  t = (1.0 - e) / (1.0 + e)
  return t if x >= 0.0 else -t


@numba.njit(inline='always', **JIT_OPTIONS)
def sigmoid_s(x):
  """1 / (1 + e^-x), through e^-|x| so it never overflows."""
  e = exp_s(-abs(x))
  return (1.0 if x >= 0.0 else e) / (1.0 + e)


@numba.njit(**JIT_OPTIONS)
def tanh_(v):
  for b in range(v.shape[0]):
    v[b] = tanh_s(v[b])


@numba.njit(**JIT_OPTIONS)
def sigmoid_(v):
  for b in range(v.shape[0]):
    v[b] = sigmoid_s(v[b])
