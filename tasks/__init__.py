"""seqio Task/Mixture registrations for slam_jax (`import tasks` registers them all).

Nothing is downloaded or read at import: data locations are resolved when a dataset is built.

  demo (offline corpus):  slam_demo_text, slam_demo_speech, slam_demo_paired;
                          mixtures slam_demo, slam_demo_stage1
  LibriSpeech (TFDS):     librispeech_paired, librispeech_speech
  prepared TFRecords:     librilight_speech, librispeech_prepared_paired,
                          librispeech_prepared_speech (+ register_prepared_task for any dir)
  text:                   c4_en_text (TFDS c4/en), text_files (gin file patterns)
  downstream:             slam_demo_asr, slam_demo_cls, librispeech_asr_{960h,100h,10h},
                          glue_* (tasks/downstream.py)
  seq2seq (ST / attention ASR): slam_demo_st, slam_demo_asr_s2s, librispeech_asr_s2s (st.py);
                          covost2_en_{de,ca,ar,tr} (covost2.py)
  paper mixtures:         slam_pretrain (C4 + Libri-Light + LibriSpeech paired),
                          slam_pretrain_stage1 (C4 + Libri-Light)
"""

from tasks import common  # noqa: F401
from tasks import demo  # noqa: F401
from tasks import librilight  # noqa: F401
from tasks import librispeech  # noqa: F401
from tasks import text  # noqa: F401
from tasks import mixtures  # noqa: F401
from tasks import downstream  # noqa: F401
from tasks import st  # noqa: F401
from tasks import covost2  # noqa: F401
