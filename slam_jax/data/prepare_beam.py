"""Corpus preparation as an Apache Beam pipeline: prepare.py's shards, stats and summary at scale.

  python -m slam_jax.data.prepare_beam --src DIR --out CACHE_DIR --split train \
      [--num_shards N] [prepare's policy flags: --max_seconds 16 --long_policy split ...] \
      [Beam pipeline options: --runner DataflowRunner --project P --region R \
       --temp_location gs://... | --runner FlinkRunner ... | --direct_num_workers 8 \
       --direct_running_mode multi_processing]

The launcher scans DIR (a LibriSpeech / Libri-Light layout) and writes one plan per shard
(CACHE_DIR/stats/.SPLIT-SSSSS-of-NNNNN.plan.json: its utterances; the worker fingerprints them);
the pipeline then writes each shard on whichever worker gets it (`prepare.write_shard`: the same
bytes, stats and fingerprints as `python -m slam_jax.data.prepare`) and, when all are done, the
summary and the completion marker SPLIT.COMPLETED. Default runner: Beam's in-process FnApiRunner
(`--direct_num_workers` / `--direct_running_mode` apply), not DirectRunner, which in Beam 2.77
first tries its Prism runner and downloads that binary from GitHub when it is not installed.

* Retries: runners retry failed bundles; a shard is renamed into place only when complete and a
  finished shard with the same fingerprint is skipped, so retries and reruns redo only what is
  missing (`--overwrite` redoes everything).
* Progress: Beam counters in namespace "slam_prepare" (shards_written, shards_skipped,
  utterances_seen, examples_written, seconds_written, dropped_<reason>), which Dataflow/Flink show
  live across workers; each shard also logs one line.
* Paths: DIR must be readable by every worker under the same path (a shared or gcsfuse mount);
  CACHE_DIR may be local or a bucket (tf.io.gfile).
"""

import argparse
import dataclasses
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options import pipeline_options as beam_options

from slam_jax.data import prepare as prepare_lib

NAMESPACE = "slam_prepare"


def plan_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
  return os.path.join(out_dir, "stats", f".{split}-{shard:05d}-of-{num_shards:05d}.plan.json")


def write_plans(plans: Sequence[prepare_lib.ShardPlan], out_dir: str, split: str) -> List[str]:
  """One JSON plan per shard, so the pipeline graph carries paths, not the corpus listing."""
  gfile = prepare_lib._gfile()  # pylint: disable=protected-access
  paths = []
  for plan in plans:
    path = plan_path(out_dir, split, plan.shard, plan.num_shards)
    with gfile.GFile(path, "w") as f:
      json.dump(plan.to_json(), f)
    paths.append(path)
  return paths


class WriteShard(beam.DoFn):
  """plan path -> (shard, its stats or None when it was already done)."""

  def __init__(self, config: prepare_lib.PrepareConfig, out_dir: str, split: str,
               overwrite: bool):
    super().__init__()
    self._config = config
    self._out_dir = out_dir
    self._split = split
    self._overwrite = overwrite
    self._checker = None

  def setup(self):
    self._checker = prepare_lib._make_checker(self._config)  # pylint: disable=protected-access

  def process(self, path: str):
    gfile = prepare_lib._gfile()  # pylint: disable=protected-access
    with gfile.GFile(path) as f:
      plan = prepare_lib.ShardPlan.from_json(json.load(f))
    config, checker = self._config, self._checker
    stats = prepare_lib.write_shard(
        plan, config, self._out_dir, self._split, self._overwrite,
        lambda utts: (prepare_lib.process_utterance(u, config, checker) for u in utts))
    counter = lambda name: beam.metrics.Metrics.counter(NAMESPACE, name)
    if stats is None:
      counter("shards_skipped").inc()
      logging.info("prepare_beam: shard %d of %d already done", plan.shard, plan.num_shards)
    else:
      counter("shards_written").inc()
      counter("utterances_seen").inc(stats["utterances_seen"])
      counter("examples_written").inc(stats["examples_written"])
      counter("seconds_written").inc(int(round(stats["seconds_written"])))
      for reason, n in stats["dropped"].items():
        counter(f"dropped_{reason}").inc(n)
      logging.info("prepare_beam: shard %d of %d: %d of %d utterances written", plan.shard,
                   plan.num_shards, stats["examples_written"], stats["utterances_seen"])
    yield plan.shard, stats


def _summarize(shards: List[Tuple[int, Optional[Dict]]], out_dir: str, split: str,
               num_shards: int, max_logged: int, src: str) -> Dict:
  """After every shard: the summary and (all shards present) the completion marker."""
  del shards  # Only the dependency matters: this runs once all shards are written.
  return prepare_lib.write_summary(out_dir, split, num_shards, max_logged, src)


def build(pipeline: beam.Pipeline, src: str, out_dir: str, split: str,
          config: prepare_lib.PrepareConfig, num_shards: Optional[int] = None,
          overwrite: bool = False, utterances_per_shard: int = 256) -> beam.PCollection:
  """Adds the preparation of `src` to `pipeline`; the result holds the summary dict."""
  plans = prepare_lib.plan_shards(src, config, num_shards, utterances_per_shard)
  prepare_lib.start(out_dir, split)
  paths = write_plans(plans, out_dir, split)
  return (pipeline
          | f"Plans[{split}]" >> beam.Create(paths)
          | f"Spread[{split}]" >> beam.Reshuffle()  # One shard per work item, on any worker.
          | f"WriteShard[{split}]" >> beam.ParDo(WriteShard(config, out_dir, split, overwrite))
          | f"AllShards[{split}]" >> beam.combiners.ToList()
          | f"Summary[{split}]" >> beam.Map(_summarize, out_dir, split, len(plans),
                                             config.max_logged, src))


# The runner when none is named: the local runner DirectRunner itself falls back to, without
# DirectRunner's first attempt at the Prism runner (a binary it fetches from GitHub).
LOCAL_RUNNER = "FnApiRunner"


def with_default_runner(pipeline_args: Sequence[str]) -> List[str]:
  """`pipeline_args`, with `--runner=LOCAL_RUNNER` first unless they name a runner."""
  args = list(pipeline_args)
  if any(a == "--runner" or a.startswith("--runner=") for a in args):
    return args
  return [f"--runner={LOCAL_RUNNER}", *args]


def run(src: str, out_dir: str, split: str,
        config: prepare_lib.PrepareConfig = prepare_lib.PrepareConfig(),
        num_shards: Optional[int] = None, overwrite: bool = False,
        pipeline_args: Sequence[str] = (), utterances_per_shard: int = 256) -> Dict:
  """Runs the pipeline to the end (LOCAL_RUNNER unless `pipeline_args` name another runner)."""
  options = beam_options.PipelineOptions(with_default_runner(pipeline_args))
  options.view_as(beam_options.SetupOptions).save_main_session = False
  with beam.Pipeline(options=options) as pipeline:
    build(pipeline, src, out_dir, split, config, num_shards, overwrite, utterances_per_shard)
  gfile = prepare_lib._gfile()  # pylint: disable=protected-access
  with gfile.GFile(os.path.join(out_dir, f"{split}.summary.json")) as f:
    return json.load(f)


def parse_args(argv: Optional[Sequence[str]]) -> Tuple[argparse.Namespace, List[str]]:
  """(prepare's flags, Beam pipeline options); a flag neither knows is an error, not ignored."""
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  prepare_lib.add_flags(parser, multi_process=False)
  args, pipeline_args = parser.parse_known_args(argv)
  known = beam_options.PipelineOptions([]).get_all_options()
  unknown = [a for a in pipeline_args
             if a.startswith("--") and a[2:].split("=", 1)[0] not in known]
  if unknown:
    parser.error(f"unknown flags {unknown}: neither prepare's (see --help) nor a Beam pipeline "
                 "option (e.g. --runner, --project, --region, --temp_location, "
                 "--direct_num_workers)")
  return args, pipeline_args


def main(argv: Optional[Sequence[str]] = None) -> None:
  args, pipeline_args = parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
  config = prepare_lib.config_from_flags(args)
  summary = run(args.src, args.out, args.split, config, num_shards=args.num_shards,
                overwrite=args.overwrite, pipeline_args=pipeline_args)
  print(json.dumps(prepare_lib.short_summary(summary), indent=1))


if __name__ == "__main__":
  main()
