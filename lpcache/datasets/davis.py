"""DAVIS 2016/2017 (semi-supervised): the existing lpcache.davis layout reader and palette-PNG codec."""
from .. import davis, scoring
from . import register
from .base import Dataset

DAVIS = register(Dataset(
    name="davis",
    summary="DAVIS 2016/2017 semi-supervised VOS: JPEGImages/480p, palette-PNG Annotations/480p, "
            "ImageSets/2017/<set>.txt; scored with J&F",
    sequences=davis.load_davis,          # (root, set_name, names) -> [davis.Sequence]
    read_labels=scoring.read_ids,        # exactly numpy.array(PIL.Image.open(path)): palette indices
    write_labels=davis.write_mask,       # DAVIS palette PNG, written atomically
    metric="davis_jf",
))
