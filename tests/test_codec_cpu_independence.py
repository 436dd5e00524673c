"""The compressed bytes do not depend on the CPU the engine was compiled for (docs/FORMAT.md).

The same codes are compressed by two processes: one whose numba compiles the engine for this
machine's CPU (here znver4: AVX-512, FMA), one for a generic x86-64 (`NUMBA_CPU_NAME=generic`:
SSE2 only). Each has its own fresh `NUMBA_CACHE_DIR`, so each compiles the engine (10-20 s of
CPU) and neither can load the other's machine code. Their files must be byte-identical, their
probabilities bit-identical, and each must decode the other's file: native-encode ->
generic-decode and generic-encode -> native-decode, for the original model and a
channel-causal one (random channel_ar kernels, as tests/test_codec_engine.py makes them).

Four subprocesses in two parallel rounds: encode (compiles), then decode the other target's
files (loads the caches). The encode workers report what numba compiled for (its codegen's
cache key, `numba.config.CPU_NAME`) and scan the engine kernels' assembly: the generic build
has no AVX registers, the native one does (on an AVX machine), and neither has a fused
multiply-add. So the test also proves that NUMBA_CPU_NAME was honoured.

It has teeth: with `fastmath=True` in codec/arith.py's JIT_OPTIONS the native build had 1,057
FMA instructions and its probabilities differed from the generic build's (by 6e-8) on these
codes; the files happened to be the same, which is why the probabilities are compared too.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import REFERENCE_DIR
from entropy_coder import model_files
from entropy_coder.codec import engine_weights
from entropy_coder.data_gen import synthetic

pytestmark = pytest.mark.e2e  # the repository's mark for slow tests (excluded by `make test-fast`)

_WORKER = r'''
import json, re, sys
import numba
import numpy as np
from numba.core.registry import cpu_target
from entropy_coder import codec, model_files
from entropy_coder.codec import engine, engine_weights

mode, work, codes_path, models = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with np.load(codes_path) as f:
  codes = [f[name] for name in sorted(f.files, key=lambda n: int(n[4:]))]
report = {'config_cpu_name': numba.config.CPU_NAME,
          'magic_tuple': list(cpu_target.target_context.codegen().magic_tuple()),
          'decoded_equal': []}
for i, model in enumerate(models):
  files = model_files.read_model_files(model)
  if mode == 'encode':
    data = codec.compress(codes, files, threads=1)
    with open(f'{work}/model{i}.nec', 'wb') as f:
      f.write(data)
    net = engine_weights.build_network(files)
    probs = {}
    for shape in sorted({c.shape for c in codes}):
      batch = np.stack([c for c in codes if c.shape == shape])
      p_model, p_coded = engine.engine_probabilities(net, batch)
      key = 'x'.join(map(str, shape))
      probs[f'model_{key}'], probs[f'coded_{key}'] = p_model, p_coded
    np.savez(f'{work}/model{i}_probs.npz', **probs)
  else:  # decode the other target's file
    with open(f'{work}/model{i}.nec', 'rb') as f:
      restored = codec.decompress(f.read(), files, threads=1)
    report['decoded_equal'].append(len(restored) == len(codes) and all(
        a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(restored, codes)))
if mode == 'encode':  # compiled in this process (fresh cache): their machine code is at hand
  kernels = [engine.wave_step, engine.wave_channel, engine.next_state, engine.layer_a1,
             engine.code_known_layer, engine.put_bits, engine.coding_order_bits]
  asm = '\n'.join(k.inspect_asm(sig) for k in kernels for sig in k.signatures)
  report.update(kernel_signatures=sum(len(k.signatures) for k in kernels), asm_chars=len(asm),
                uses_ymm='%ymm' in asm, uses_zmm='%zmm' in asm,
                fused_multiply_adds=len(re.findall(r'\bvfn?m(?:add|sub)', asm)))
print(json.dumps(report))
'''


def _write_models(root):
  weights = dict(np.load(os.path.join(REFERENCE_DIR, 'weights_step25284.npz'), allow_pickle=False))
  plain = str(root / 'model_plain')
  model_files.write_model_files(plain, weights, {'layer_depth': 2, 'layer_count': 8})
  rng = np.random.default_rng(7)
  causal_weights = dict(weights)
  for k in range(8):  # random nonzero channel_ar kernels (the network masks them: j < c)
    causal_weights[f'layer{k}/brnn/channel_ar/kernel'] = (
        rng.normal(0.0, 0.8, (2, 2, 4)) * engine_weights.channel_ar_mask(2)).astype(np.float32)
  causal = str(root / 'model_causal')
  model_files.write_model_files(causal, causal_weights,
                                {'layer_depth': 2, 'layer_count': 8, 'channel_causal': True})
  return [plain, causal]


def _codes():
  """Small codes, in batches wide enough for the SIMD loops: the engine's loops run over the
  codes of a chunk innermost (8 or 16 float32 lanes with AVX, 4 with SSE2), so a chunk of 35
  runs full vectors and a remainder, and only such batches tell the targets apart (with fastmath,
  3 codes came out the same on both targets and 37 did not). 70 codes of 5x6x8 (2 chunks of
  35), 17 of 3x4x4, 1 of 1x1x16 (scalar code only)."""
  return (list(synthetic.generate_codes(5, 0, 70, shape=(5, 6, 8)))
          + list(synthetic.generate_codes(6, 0, 17, shape=(3, 4, 4)))
          + list(synthetic.generate_codes(7, 0, 1, shape=(1, 1, 16))))


def _env(target, root):
  """Each target its own fresh numba cache (so round 1 compiles, round 2 loads); generic:
  NUMBA_CPU_NAME=generic, which makes numba's CPU features empty too."""
  env = {k: v for k, v in os.environ.items() if not k.startswith('NUMBA_CPU_')}
  env['NUMBA_CACHE_DIR'] = str(root / f'numba_cache_{target}')
  if target == 'generic':
    env['NUMBA_CPU_NAME'] = 'generic'
  return env


def _round(mode, targets, work_dirs, codes_path, models, root):
  """Runs one worker per target in parallel; -> {target: report}."""
  running = {
      t: subprocess.Popen(
          [sys.executable, '-c', _WORKER, mode, str(work_dirs[t]), codes_path, *models],
          env=_env(t, root), cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for t in targets}
  reports = {}
  try:
    for target, process in running.items():
      out, err = process.communicate(timeout=600)
      assert process.returncode == 0, f'{mode} worker for {target} failed:\n{err[-3000:]}'
      reports[target] = json.loads(out.strip().splitlines()[-1])
  finally:
    for process in running.values():
      if process.poll() is None:
        process.kill()
  return reports


def test_files_are_identical_and_cross_decode_between_native_and_generic_cpu_builds(tmp_path):
  models = _write_models(tmp_path)
  codes = _codes()
  codes_path = str(tmp_path / 'codes.npz')
  np.savez(codes_path, **{f'code{i}': code for i, code in enumerate(codes)})
  targets = ('native', 'generic')
  encoded = {t: tmp_path / f'encoded_{t}' for t in targets}
  for directory in encoded.values():
    directory.mkdir()

  built = _round('encode', targets, encoded, codes_path, models, tmp_path)

  # numba compiled the engine for the two targets it was asked for, and they really differ;
  # neither contracted a multiply and an add into one FMA (which would change the rounding).
  native, generic = built['native'], built['generic']
  assert native['config_cpu_name'] is None and native['magic_tuple'][1] != 'generic'
  assert generic['config_cpu_name'] == 'generic'
  assert generic['magic_tuple'][1:] == ['generic', '']  # cpu name, no extra features
  for report in (native, generic):
    assert report['kernel_signatures'] >= 6 and report['asm_chars'] > 100_000, report
    assert report['fused_multiply_adds'] == 0, report
  assert not generic['uses_ymm'] and not generic['uses_zmm']
  if '+avx' in native['magic_tuple'][2].split(','):
    assert native['uses_ymm'] or native['uses_zmm']

  for i in range(len(models)):
    native_bytes = (encoded['native'] / f'model{i}.nec').read_bytes()
    generic_bytes = (encoded['generic'] / f'model{i}.nec').read_bytes()
    assert native_bytes == generic_bytes, f'model {i}: the files differ between CPU targets'
    with np.load(encoded['native'] / f'model{i}_probs.npz') as a, \
         np.load(encoded['generic'] / f'model{i}_probs.npz') as b:
      assert sorted(a.files) == sorted(b.files)
      for name in a.files:  # every probability, quantised or not, to the last bit
        assert np.array_equal(a[name], b[name]), (i, name)
  plain, causal = ((encoded['native'] / f'model{i}.nec').read_bytes() for i in range(2))
  assert plain != causal  # the channel-causal model codes differently: it is exercised

  # Each target decodes the other's files: native-encode -> generic-decode and back.
  crossed = {'native': encoded['generic'], 'generic': encoded['native']}
  decoded = _round('decode', targets, crossed, codes_path, models, tmp_path)
  assert decoded['native']['decoded_equal'] == [True, True]
  assert decoded['generic']['decoded_equal'] == [True, True]
  assert decoded['generic']['magic_tuple'] == generic['magic_tuple']
