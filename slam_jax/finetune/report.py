"""One table of a downstream demo directory: pre-trained vs scratch (`launch/downstream_demo.sh`).

  python -m slam_jax.finetune.report runs/downstream_demo-...

Reads <dir>/{ctc,cls}-{pretrained,scratch}/validation.json and <dir>/retrieval.json.
"""

import json
import os
import sys
from typing import Dict, List, Optional


def _final(path: str) -> Optional[Dict[str, float]]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    rows = json.load(f)["validation"]
  return rows[-1] if rows else None


def table(root: str) -> str:
  """Markdown table: task, metric, pre-trained, scratch."""
  lines: List[str] = ["| task (held-out) | metric | pre-trained | scratch |", "|---|---|---|---|"]
  for task, metric, label in (("ctc", "wer", "ASR, CTC (validation speakers)"),
                              ("cls", "accuracy", "who-acts classification")):
    cells = []
    for init in ("pretrained", "scratch"):
      row = _final(os.path.join(root, f"{task}-{init}", "validation.json"))
      cells.append(f"{row[metric]:.1f}" if row and metric in row else "-")
    unit = "WER % (lower is better)" if metric == "wer" else "accuracy % (chance 50)"
    lines.append(f"| {label} | {unit} | {cells[0]} | {cells[1]} |")
  path = os.path.join(root, "retrieval.json")
  if os.path.exists(path):
    with open(path) as f:
      r = json.load(f)
    n = int(r.get("pairs", 0))
    for scorer in ("stm", "cosine"):
      for k in (1, 5, 10):
        s2t, t2s = r.get(f"{scorer}/speech_to_text/R@{k}"), r.get(f"{scorer}/text_to_speech/R@{k}")
        if s2t is not None:
          lines.append(f"| retrieval, {scorer} ({n} pairs) | R@{k} speech->text / text->speech "
                       f"(chance {100 * k / max(n, 1):.0f}) | {s2t:.0f} / {t2s:.0f} | n/a |")
  return "\n".join(lines)


if __name__ == "__main__":
  print(table(sys.argv[1]))
