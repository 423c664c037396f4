"""The seq2seq tasks: the demo ST task yields speech + target-language ids; registration reads no
data."""
import numpy as np
import seqio

from slam_jax import types
from slam_jax.data.demo import target_language


def test_demo_st_task(demo_tasks):
  from tasks import st  # pylint: disable=g-import-not-at-top
  st.register_demo_seq2seq_tasks(demo_tasks)
  task = seqio.get_mixture_or_task(st.DEMO_ST_TASK)
  assert [f.__name__ for f in task.metric_fns] == ["bleu", "chrf"]
  ds = task.get_dataset({"speech": 600, "text": 64}, split="validation", shuffle=False)
  rows = list(ds.as_numpy_iterator())
  assert len(rows) == 4
  expected = {}
  with open(target_language.tsv_path(demo_tasks, "validation"), encoding="utf-8") as f:
    for line in f:
      uid, _, target = line.rstrip("\n").split("\t")
      expected[uid] = target
  vocab = task.output_features[types.TASK_TEXT].vocabulary
  for row in rows:
    assert row[types.TASK_KIND] == types.KIND_PAIRED
    assert row[types.TASK_SPEECH].shape[1] == types.NUM_MEL_BINS
    assert row[types.TASK_TEXT][-1] == 1
    assert vocab.decode(row[types.TASK_TEXT][:-1].tolist()) == expected[row["id"].decode()]
  asr = seqio.get_mixture_or_task(st.DEMO_ASR_TASK)
  row = next(asr.get_dataset({"speech": 600, "text": 64}, split="validation",
                             shuffle=False).as_numpy_iterator())
  assert np.all(row[types.TASK_TEXT][:-1] > 1)


def test_registered_without_data():
  import tasks  # pylint: disable=g-import-not-at-top,unused-import
  for name in ("slam_demo_st", "slam_demo_asr_s2s", "librispeech_asr_s2s", "covost2_en_de",
               "covost2_en_ca", "covost2_en_ar", "covost2_en_tr"):
    assert name in seqio.TaskRegistry.names(), name
