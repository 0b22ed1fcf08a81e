"""``python -m workloads.infer``: batch inference of a trained checkpoint, one line per input.

The inputs are cut into contiguous shards, one Ray task per shard, each holding one
GPU of the job's cluster (``--tasks``, default: one per GPU, or one per node without
GPUs); the model's state is put in the object store once. Without ``RAY_ADDRESS``
(``--backend local``) the shards run in this process. The output is JSONL in input
order, exactly one line per input:

    {"index": 0, "prediction": "7", "class_id": 7, "score": 0.98, "label": "7"}

(``label``, the true class, only when the data has one.) A summary goes to
``OUTPUT.summary.json``: count, accuracy when labels are known, inputs per second over
the batch loops only (parallel shards: the slowest one's), and start-up apart (all
the rest: loading, ``ray.init``, Ray's workers starting, building the model).

``--split test`` takes the held-out part exactly as training split it (give the same
``--limit``, ``--test-fraction`` and ``--seed`` as the training run); ``all`` every input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from workloads.checkpoint import build_model, load_checkpoint
from workloads.data import DataError, load_images, load_text
from workloads.prepare import ImageOptions, TextOptions, encode_texts, split_images, split_text

BATCH = 256


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workloads.infer", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a checkpoint dir, or a job's dir")
    p.add_argument("--data", required=True, help="digits, rotten_tomatoes, a folder or a file")
    p.add_argument("--output", required=True, help="the JSONL file of predictions")
    p.add_argument("--split", choices=("test", "all"), default="test")
    p.add_argument("--limit", type=int)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-balance", action="store_true", help="text: as training had it")
    p.add_argument("--tasks", type=int, help="Ray tasks [default: one per GPU]")
    p.add_argument("--backend", choices=("auto", "ray", "local"), default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    return p


def inputs_for(
    state: dict[str, Any], args: argparse.Namespace
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64] | None]:
    """The model inputs and, when known, their class ids (in the checkpoint's order)."""
    names = tuple(state["label_names"])
    if "vocab" in state or "pretrained" in state:
        if args.split == "test":
            options = TextOptions(args.data, args.limit, not args.no_balance, args.test_fraction)
            split = split_text(replace(options, seed=args.seed))
            texts = [split.texts[i] for i in split.test]
            labels = [split.label_names[i] for i in split.y[split.test]]
        else:
            samples = load_text(args.data)
            texts, labels = list(samples.texts), list(samples.labels)
        return encode_texts(state, texts), _class_ids(labels, names)
    dataset = load_images(args.data)
    if args.split == "test":
        image = ImageOptions(args.data, args.limit, args.test_fraction, args.seed)
        dataset, _, test = split_images(image)
        dataset = dataset.subset(test)
    labels = [dataset.label_names[i] for i in dataset.y]
    return dataset.x, _class_ids(labels, names)


def _class_ids(labels: list[str], names: tuple[str, ...]) -> npt.NDArray[np.int64] | None:
    """The checkpoint's class ids of ``labels``; None when some label is not one of them."""
    index = {name: i for i, name in enumerate(names)}
    if not set(labels) <= set(index):
        return None
    return np.array([index[label] for label in labels], dtype=np.int64)


@dataclass
class Predictions:
    ids: list[int] = field(default_factory=list)  # class ids, in input order
    scores: list[float] = field(default_factory=list)  # their softmax probabilities
    compute_s: float = 0.0  # in the batch loop only (of the slowest shard when parallel)


def predict(state: dict[str, Any], x: npt.NDArray[Any]) -> Predictions:
    """Class ids and their softmax scores for ``x``, on this process's GPU or CPU."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    model = build_model(str(state["workload"]), dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    out = Predictions()
    began = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(x), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + BATCH])).to(device)
            best = torch.softmax(model(batch).float(), dim=1).max(dim=1)
            out.ids += best.indices.cpu().tolist()
            out.scores += best.values.cpu().tolist()
    out.compute_s = time.perf_counter() - began
    return out


def _predict_shard(state: dict[str, Any], x: npt.NDArray[Any], threads: int) -> Predictions:
    torch.set_num_threads(threads)
    return predict(state, x)


def predict_on_ray(
    state: dict[str, Any], x: npt.NDArray[Any], tasks: int | None, threads: int
) -> Predictions:
    """Shards over Ray tasks, one GPU each (or one CPU without GPUs); results in order."""
    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS") or None)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    count = max(1, min(tasks or gpus or alive, len(x)))
    remote = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(_predict_shard)
    state_ref = ray.put(state)
    shards = np.array_split(np.arange(len(x)), count)
    futures = [remote.remote(state_ref, x[shard], threads) for shard in shards]
    print(f"[infer] {len(x)} inputs in {count} Ray task(s), GPUs {gpus}", flush=True)
    merged = Predictions()
    for part in ray.get(futures):
        merged.ids += part.ids
        merged.scores += part.scores
        merged.compute_s = max(merged.compute_s, part.compute_s)
    return merged


def write_predictions(
    path: Path,
    names: Sequence[str],
    ids: list[int],
    scores: list[float],
    truth: npt.NDArray[np.int64] | None,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for index, (class_id, score) in enumerate(zip(ids, scores, strict=True)):
            line: dict[str, Any] = {"index": index, "prediction": names[class_id]}
            line.update({"class_id": class_id, "score": round(score, 6)})
            if truth is not None:
                line["label"] = names[int(truth[index])]
            out.write(json.dumps(line) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.time()
    try:
        state = load_checkpoint(Path(args.checkpoint))
        x, truth = inputs_for(state, args)
    except (DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ray_wanted = args.backend == "ray" or (args.backend == "auto" and os.environ.get("RAY_ADDRESS"))
    if ray_wanted:
        out = predict_on_ray(state, x, args.tasks, args.threads)
    else:
        out = _predict_shard(state, x, args.threads)
    names = list(state["label_names"])
    output = Path(args.output)
    write_predictions(output, names, out.ids, out.scores, truth)
    wall_s = time.time() - started
    summary: dict[str, Any] = {"count": len(out.ids), "compute_s": round(out.compute_s, 3)}
    summary["inputs_per_s"] = round(len(out.ids) / out.compute_s, 2) if out.compute_s else None
    summary["startup_s"] = round(wall_s - out.compute_s, 3)  # all but the batch loop
    summary["wall_s"] = round(wall_s, 3)
    if truth is not None:
        summary["accuracy"] = float(np.mean(np.array(out.ids) == truth)) if out.ids else 0.0
    Path(f"{output}.summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[infer] {len(out.ids)} predictions in {output}: {json.dumps(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    # Through the module's own name, so that Ray ships `workloads.infer._predict_shard`
    # by reference rather than pickling this `__main__` by value.
    from workloads.infer import main as infer_main

    raise SystemExit(infer_main())
