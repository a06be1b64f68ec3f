"""Run folders: `<runs>/<run_id>/<seq>/<frame>.png` palette masks, per-sequence done markers, run.json.

Layout:
    <runs>/<run_id>/run.json              parameters, cache id and attributes, device, timings, provenance
    <runs>/<run_id>/<seq>/00000.png ...   DAVIS palette PNGs (object ids), each written atomically
    <runs>/<run_id>/<seq>/.done.json      written last: the sequence is complete (frames, seconds)
A sequence folder without `.done.json` is partial: a re-run clears it and redoes it; a done one is skipped.
run_id = `<backbone_id>__<params.id>`, e.g. `r18_crw__t0.7_k8_r18_L20` (see `run_id`).
"""
import json
import os
import shutil
from typing import Dict, Iterable, Optional

import numpy as np

from .atomic import write_json_atomic
from .davis import write_mask
from .errors import InputError

RUN_JSON = "run.json"
DONE = ".done.json"


def run_id(params, backbone_id: Optional[str] = None) -> str:
    """`<backbone_id>__<params.id>` (just `params.id` without a backbone id)."""
    return f"{backbone_id}__{params.id}" if backbone_id else params.id


class RunFolder:
    """One run's folder of masks."""

    def __init__(self, runs_dir, name):
        self.root = os.path.join(os.fspath(runs_dir), name)

    @property
    def run_json(self) -> str:
        return os.path.join(self.root, RUN_JSON)

    def sequence_dir(self, seq) -> str:
        return os.path.join(self.root, seq)

    def is_done(self, seq) -> bool:
        return os.path.isfile(os.path.join(self.sequence_dir(seq), DONE))

    def done_info(self, seq) -> Dict:
        with open(os.path.join(self.sequence_dir(seq), DONE), encoding="utf-8") as handle:
            return json.load(handle)

    def start_sequence(self, seq) -> str:
        """Clear whatever a previous, interrupted run left for `seq`; return its folder."""
        folder = self.sequence_dir(seq)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)
        return folder

    def write_frame(self, seq, frame_name, ids: np.ndarray):
        write_mask(os.path.join(self.sequence_dir(seq), frame_name + ".png"), ids)

    def finish_sequence(self, seq, info: Dict):
        write_json_atomic(os.path.join(self.sequence_dir(seq), DONE), info)

    def write_sequence(self, seq, frame_names: Iterable[str], masks: Iterable[np.ndarray], info: Dict):
        """All masks of a sequence, then the done marker."""
        self.start_sequence(seq)
        for name, ids in zip(frame_names, masks):
            self.write_frame(seq, name, ids)
        self.finish_sequence(seq, info)

    def read_run_json(self) -> Optional[Dict]:
        if not os.path.isfile(self.run_json):
            return None
        with open(self.run_json, encoding="utf-8") as handle:
            return json.load(handle)

    def check_compatible(self, identity: Dict):
        """Refuse to resume a folder whose run.json records another cache or parameters."""
        found = self.read_run_json()
        if found is None:
            return
        old = found.get("identity", {})
        diffs = [f"{k}: folder has {old.get(k)!r}, request has {v!r}" for k, v in identity.items() if old.get(k) != v]
        if diffs:
            raise InputError(f"{self.run_json}: this run folder was made differently ({'; '.join(diffs)}); "
                             "choose another --out or delete it")

    def write_run_json(self, record: Dict):
        write_json_atomic(self.run_json, record)
