"""Reference scores from the official davis2017-evaluation code, and the code that builds each case.

How the numbers were made: the official repository (github davisvideochallenge/davis2017-evaluation) was
checked out outside this repo and run with this venv's python, `evaluation_method.py --task semi-supervised`,
on the folders that `build_case` below writes from the shared data (../shared/data). GLOBAL / PER_OBJECT are
`repr` of its in-memory float64 results (DAVISEvaluation.evaluate, globals as evaluation_method.py computes
them); CSV_GLOBAL / CSV_PER_SEQUENCE are the bytes of the CSVs it wrote. The tests rebuild the same
predictions with `build_case` in tmp_path and compare lpcache's values (|diff| <= 1e-12) and CSVs (bytes).

Cases (predictions only for evaluated frames; t = index in the sorted annotation list):
  osvos_bin_all   OSVOS masks binarised (id > 0 -> 1) vs davis2016-val, all 20 sequences.
  osvos_bin       same, on SHORT sequences only.
  shift           GT shifted down 3 and left 5 pixels (zero fill).
  erode_dilate    GT eroded (even t) / dilated (odd t) by a 7x7 ellipse.
  blank           GT with every 3rd frame blank and frames 10..14 filled (whole frame = object).
  all_empty       all-zero predictions.
  full            whole-frame predictions (all 1).
  multi           DAVIS root whose Annotations are the OSVOS masks with a void (255) band on rows 0..11
                  (MULTI sequences, 2-3 objects); predictions = OSVOS masks with ids 1/2 swapped when t % 5 == 0,
                  the highest id removed when t % 7 == 0, shifted right 4 pixels when t % 3 == 0.
  multi_missing   same root; predictions keep only object 1 of OSVOS (M < N).
  seed_880        protocol 480x880: GT (davis2016-val) and OSVOS-binarised predictions resized with PIL NEAREST
                  to 880x480 on disk for the official run; lpcache scores with gt_size=(480, 880).
"""
import os

import cv2
import numpy as np
from PIL import Image

SHORT = ["car-shadow", "motocross-jump", "scooter-black"]
MULTI = ["motocross-jump", "scooter-black", "kite-surf"]
SEED_SIZE = (480, 880)

CASES = {
    # name: (sequences, davis root kind, gt_size for lpcache)
    "osvos_bin_all": (None, "davis2016", None),
    "osvos_bin": (SHORT, "davis2016", None),
    "shift": (SHORT, "davis2016", None),
    "erode_dilate": (SHORT, "davis2016", None),
    "blank": (SHORT, "davis2016", None),
    "all_empty": (SHORT, "davis2016", None),
    "full": (SHORT, "davis2016", None),
    "multi": (MULTI, "multi", None),
    "multi_missing": (MULTI, "multi", None),
    "seed_880": (SHORT, "davis2016", SEED_SIZE),
}


def _read(path):
    return np.array(Image.open(path))


def _write(path, ids):
    image = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    image.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    image.save(path, compress_level=1)


def _shift(ids, dy, dx):
    out = np.zeros_like(ids)
    h, w = ids.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = ids[ys, xs]
    return out


_ELLIPSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def make_prediction(case, t, gt, osvos):
    """The predicted ids of frame t for a case (gt: the case's GT ids, osvos: the OSVOS ids)."""
    if case in ("osvos_bin_all", "osvos_bin", "seed_880"):
        return (osvos > 0).astype(np.uint8)
    if case == "shift":
        return _shift(gt, 3, -5)
    if case == "erode_dilate":
        op = cv2.erode if t % 2 == 0 else cv2.dilate
        return op(gt.astype(np.uint8), _ELLIPSE)
    if case == "blank":
        if 10 <= t <= 14:
            return np.ones_like(gt)
        return np.zeros_like(gt) if t % 3 == 0 else gt
    if case == "all_empty":
        return np.zeros_like(gt)
    if case == "full":
        return np.ones_like(gt)
    if case == "multi":
        pred = osvos.copy()
        if t % 5 == 0:
            pred = np.where(osvos == 1, 2, np.where(osvos == 2, 1, osvos)).astype(osvos.dtype)
        if t % 7 == 0:
            pred[pred == pred.max()] = 0
        if t % 3 == 0:
            pred = _shift(pred, 0, 4)
        return pred
    if case == "multi_missing":
        return (osvos == 1).astype(np.uint8)
    raise KeyError(case)


def _sequences(davis2016, names):
    if names:
        return list(names)
    with open(os.path.join(davis2016, "ImageSets", "2017", "val.txt")) as handle:
        return [line.strip() for line in handle if line.strip()]


def _new_root(davis2016, out_root, sequences, linked=("JPEGImages",)):
    """A DAVIS root with ImageSets/2017/val.txt listing `sequences` and their `linked` folders symlinked."""
    os.makedirs(os.path.join(out_root, "ImageSets", "2017"), exist_ok=True)
    with open(os.path.join(out_root, "ImageSets", "2017", "val.txt"), "w") as handle:
        handle.write("".join(f"{s}\n" for s in sequences))
    for kind in linked:
        os.makedirs(os.path.join(out_root, kind, "480p"), exist_ok=True)
        for seq in sequences:
            os.symlink(os.path.join(davis2016, kind, "480p", seq), os.path.join(out_root, kind, "480p", seq))


def build_multi_root(davis2016, osvos, out_root, sequences=MULTI):
    """A DAVIS root: JPEGs symlinked from davis2016-val, Annotations = OSVOS masks with a void band."""
    _new_root(davis2016, out_root, sequences)
    for seq in sequences:
        ann_dir = os.path.join(out_root, "Annotations", "480p", seq)
        os.makedirs(ann_dir)
        for name in sorted(os.listdir(os.path.join(osvos, seq))):
            ids = _read(os.path.join(osvos, seq, name)).copy()
            ids[:12] = 255
            _write(os.path.join(ann_dir, name), ids)
    return out_root


def build_resized_root(davis2016, out_root, sequences, size=SEED_SIZE):
    """davis2016-val with annotations resized (PIL NEAREST) to size on disk (for the official run only)."""
    _new_root(davis2016, out_root, sequences)
    for seq in sequences:
        src = os.path.join(davis2016, "Annotations", "480p", seq)
        ann_dir = os.path.join(out_root, "Annotations", "480p", seq)
        os.makedirs(ann_dir)
        for name in sorted(os.listdir(src)):
            image = Image.open(os.path.join(src, name))
            image.resize((size[1], size[0]), Image.NEAREST).save(os.path.join(ann_dir, name))
    return out_root


def build_subset_root(davis2016, out_root, sequences):
    """davis2016-val restricted to some sequences (symlinks; the official code cannot pick a subset)."""
    _new_root(davis2016, out_root, sequences, linked=("JPEGImages", "Annotations"))
    return out_root


def build_case(case, davis2016, osvos, work_dir, official=False):
    """Write the case's predictions (and root) under work_dir; returns (davis_root, results_dir, sequences).

    davis_root is what lpcache scores against; with official=True, seed_880 returns the resized root.
    """
    names, root_kind, gt_size = CASES[case]
    sequences = _sequences(davis2016, names)
    if root_kind == "multi":
        root = build_multi_root(davis2016, osvos, os.path.join(work_dir, "root"), sequences)
    else:
        root = davis2016
    if official and gt_size:
        root = build_resized_root(davis2016, os.path.join(work_dir, "root"), sequences, gt_size)
    elif official and names and root_kind == "davis2016":
        root = build_subset_root(davis2016, os.path.join(work_dir, "root"), sequences)
    results = os.path.join(work_dir, "results")
    for seq in sequences:
        ann_dir = os.path.join(root, "Annotations", "480p", seq)
        names_png = sorted(os.listdir(os.path.join(davis2016, "Annotations", "480p", seq)))
        os.makedirs(os.path.join(results, seq))
        for t, name in enumerate(names_png[1:-1], start=1):
            gt = _read(os.path.join(ann_dir, name)) if root_kind == "multi" else \
                _read(os.path.join(davis2016, "Annotations", "480p", seq, name))
            gt = np.where(gt == 255, 0, gt).astype(np.uint8)
            pred = make_prediction(case, t, gt, _read(os.path.join(osvos, seq, name)))
            if gt_size:
                pred = np.array(Image.fromarray(pred.astype(np.uint8)).resize((gt_size[1], gt_size[0]),
                                                                              Image.NEAREST))
            _write(os.path.join(results, seq, name), pred)
    return root, results, sequences


# ---- official results (filled in by /work/ref/run_reference.py) ----
GLOBAL = {'osvos_bin_all': {'J&F-Mean': 0.7660933501502263,
                   'J-Mean': 0.7558411602197285,
                   'J-Recall': 0.8838668773646443,
                   'J-Decay': 0.17227691118658295,
                   'F-Mean': 0.776345540080724,
                   'F-Recall': 0.9215856481075837,
                   'F-Decay': 0.15968620528140204},
 'osvos_bin': {'J&F-Mean': 0.7777000426887996,
               'J-Mean': 0.8050400232648706,
               'J-Recall': 0.9105691056910569,
               'J-Decay': 0.19075282934919247,
               'F-Mean': 0.7503600621127285,
               'F-Recall': 0.9385964912280702,
               'F-Decay': 0.18011299486218493},
 'shift': {'J&F-Mean': 0.9357419843568627,
           'J-Mean': 0.8738905982362416,
           'J-Recall': 1.0,
           'J-Decay': 0.019070965815603674,
           'F-Mean': 0.9975933704774839,
           'F-Recall': 1.0,
           'F-Decay': -1.720282126268143e-05},
 'erode_dilate': {'J&F-Mean': 0.9256717526392448,
                  'J-Mean': 0.8883040554035487,
                  'J-Recall': 1.0,
                  'J-Decay': 0.019903924444624743,
                  'F-Mean': 0.9630394498749411,
                  'F-Recall': 1.0,
                  'F-Decay': 0.024086499545862727},
 'blank': {'J&F-Mean': 0.5896102448222882,
           'J-Mean': 0.5981336261443625,
           'J-Recall': 0.581086863500214,
           'J-Decay': -0.1164819077780143,
           'F-Mean': 0.581086863500214,
           'F-Recall': 0.581086863500214,
           'F-Decay': -0.1272727272727273},
 'all_empty': {'J&F-Mean': 0.0,
               'J-Mean': 0.0,
               'J-Recall': 0.0,
               'J-Decay': 0.0,
               'F-Mean': 0.0,
               'F-Recall': 0.0,
               'F-Decay': 0.0},
 'full': {'J&F-Mean': 0.06165361862773686,
          'J-Mean': 0.12330723725547373,
          'J-Recall': 0.02631578947368421,
          'J-Decay': -0.018305138622761567,
          'F-Mean': 0.0,
          'F-Recall': 0.0,
          'F-Decay': 0.0},
 'multi': {'J&F-Mean': 0.7685267358751124,
           'J-Mean': 0.7169155436281157,
           'J-Recall': 0.768074912891986,
           'J-Decay': -0.042284417979114454,
           'F-Mean': 0.8201379281221091,
           'F-Recall': 0.8024940399779937,
           'F-Decay': -0.007079735579416847},
 'multi_missing': {'J&F-Mean': 0.48140793997086334,
                   'J-Mean': 0.4789107317657796,
                   'J-Recall': 0.48135964912280704,
                   'J-Decay': -0.0697843108971558,
                   'F-Mean': 0.4839051481759471,
                   'F-Recall': 0.4851190476190476,
                   'F-Decay': -0.06697309063673526},
 'seed_880': {'J&F-Mean': 0.7826580959890483,
              'J-Mean': 0.8051117800410461,
              'J-Recall': 0.9105691056910569,
              'J-Decay': 0.19040885544815533,
              'F-Mean': 0.7602044119370505,
              'F-Recall': 0.9649122807017544,
              'F-Decay': 0.17554562360878354}}

PER_OBJECT = {'osvos_bin_all': {'blackswan_1': {'J-Mean': 0.9430200107249278,
                                   'J-Recall': 1.0,
                                   'J-Decay': 0.0014083923122019115,
                                   'F-Mean': 0.9740964785153858,
                                   'F-Recall': 1.0,
                                   'F-Decay': -0.00041640925587305144},
                   'bmx-trees_1': {'J-Mean': 0.5405311330912367,
                                   'J-Recall': 0.6538461538461539,
                                   'J-Decay': 0.256088316146415,
                                   'F-Mean': 0.7663408449507089,
                                   'F-Recall': 0.8974358974358975,
                                   'F-Decay': 0.2146414776018607},
                   'breakdance_1': {'J-Mean': 0.7272058108086938,
                                    'J-Recall': 0.9512195121951219,
                                    'J-Decay': 0.14104687253588966,
                                    'F-Mean': 0.7559520261762988,
                                    'F-Recall': 0.9878048780487805,
                                    'F-Decay': 0.1114053394124831},
                   'camel_1': {'J-Mean': 0.8594593779725596,
                               'J-Recall': 1.0,
                               'J-Decay': 0.2000351907456801,
                               'F-Mean': 0.8905338723159325,
                               'F-Recall': 1.0,
                               'F-Decay': 0.18770905407873373},
                   'car-roundabout_1': {'J-Mean': 0.8895363361348493,
                                        'J-Recall': 1.0,
                                        'J-Decay': 0.13679540941905133,
                                        'F-Mean': 0.8269456643641002,
                                        'F-Recall': 1.0,
                                        'F-Decay': 0.0520290161827387},
                   'car-shadow_1': {'J-Mean': 0.9284015952829885,
                                    'J-Recall': 1.0,
                                    'J-Decay': 0.11028022983041497,
                                    'F-Mean': 0.9174071827386898,
                                    'F-Recall': 1.0,
                                    'F-Decay': 0.1697486757837553},
                   'cows_1': {'J-Mean': 0.9522318621406558,
                              'J-Recall': 1.0,
                              'J-Decay': 0.02210947520224349,
                              'F-Mean': 0.9567269395028105,
                              'F-Recall': 1.0,
                              'F-Decay': 0.03343666426819303},
                   'dance-twirl_1': {'J-Mean': 0.6408918365671089,
                                     'J-Recall': 0.7954545454545454,
                                     'J-Decay': 0.13990887663367912,
                                     'F-Mean': 0.7164247903249229,
                                     'F-Recall': 0.9659090909090909,
                                     'F-Decay': 0.15319357195610872},
                   'dog_1': {'J-Mean': 0.7107922794984851,
                             'J-Recall': 0.7241379310344828,
                             'J-Decay': 0.1481500201345477,
                             'F-Mean': 0.6911087718213588,
                             'F-Recall': 0.7931034482758621,
                             'F-Decay': 0.1314403978227967},
                   'drift-chicane_1': {'J-Mean': 0.7742201934629012,
                                       'J-Recall': 1.0,
                                       'J-Decay': -0.10120113564850919,
                                       'F-Mean': 0.8288930891734982,
                                       'F-Recall': 1.0,
                                       'F-Decay': -0.08142508978476715},
                   'drift-straight_1': {'J-Mean': 0.665460967781256,
                                        'J-Recall': 0.7291666666666666,
                                        'J-Decay': 0.6198517135397359,
                                        'F-Mean': 0.7067742607751887,
                                        'F-Recall': 0.6666666666666666,
                                        'F-Decay': 0.4895861082580887},
                   'goat_1': {'J-Mean': 0.869381521401722,
                              'J-Recall': 1.0,
                              'J-Decay': 0.05679892103671169,
                              'F-Mean': 0.8759269922023346,
                              'F-Recall': 1.0,
                              'F-Decay': 0.06903191208620096},
                   'horsejump-high_1': {'J-Mean': 0.7743906157088828,
                                        'J-Recall': 1.0,
                                        'J-Decay': 0.2509165372665805,
                                        'F-Mean': 0.8723934655785391,
                                        'F-Recall': 1.0,
                                        'F-Decay': 0.08467975425840368},
                   'kite-surf_1': {'J-Mean': 0.598068948196033,
                                   'J-Recall': 0.8541666666666666,
                                   'J-Decay': -0.02097808403853063,
                                   'F-Mean': 0.6603981636224597,
                                   'F-Recall': 1.0,
                                   'F-Decay': -0.02267760534273533},
                   'libby_1': {'J-Mean': 0.6230269658692634,
                               'J-Recall': 0.6170212765957447,
                               'J-Decay': 0.4986131296200014,
                               'F-Mean': 0.7512319256345152,
                               'F-Recall': 0.9148936170212766,
                               'F-Decay': 0.3494712928253578},
                   'motocross-jump_1': {'J-Mean': 0.8155920551613985,
                                        'J-Recall': 1.0,
                                        'J-Decay': 0.004324980574219595,
                                        'F-Mean': 0.620658109602114,
                                        'F-Recall': 0.8157894736842105,
                                        'F-Decay': 0.052316231108353595},
                   'paragliding-launch_1': {'J-Mean': 0.5587692230422061,
                                            'J-Recall': 0.6410256410256411,
                                            'J-Decay': 0.19421536741874385,
                                            'F-Mean': 0.44218829391673,
                                            'F-Recall': 0.46153846153846156,
                                            'F-Decay': 0.5854825263742216},
                   'parkour_1': {'J-Mean': 0.7731290143164098,
                                 'J-Recall': 0.9795918367346939,
                                 'J-Decay': 0.20227442956330233,
                                 'F-Mean': 0.7408511702400915,
                                 'F-Recall': 0.9285714285714286,
                                 'F-Decay': 0.2282208003497047},
                   'scooter-black_1': {'J-Mean': 0.6711264193502249,
                                       'J-Recall': 0.7317073170731707,
                                       'J-Decay': 0.4576532776429428,
                                       'F-Mean': 0.7130148939973819,
                                       'F-Recall': 1.0,
                                       'F-Decay': 0.31827407769444593},
                   'soapbox_1': {'J-Mean': 0.8015870378827645,
                                 'J-Recall': 1.0,
                                 'J-Decay': 0.1272463037963376,
                                 'F-Mean': 0.8190438661614172,
                                 'F-Recall': 1.0,
                                 'F-Decay': 0.067576309949969}},
 'osvos_bin': {'car-shadow_1': {'J-Mean': 0.9284015952829885,
                                'J-Recall': 1.0,
                                'J-Decay': 0.11028022983041497,
                                'F-Mean': 0.9174071827386898,
                                'F-Recall': 1.0,
                                'F-Decay': 0.1697486757837553},
               'motocross-jump_1': {'J-Mean': 0.8155920551613985,
                                    'J-Recall': 1.0,
                                    'J-Decay': 0.004324980574219595,
                                    'F-Mean': 0.620658109602114,
                                    'F-Recall': 0.8157894736842105,
                                    'F-Decay': 0.052316231108353595},
               'scooter-black_1': {'J-Mean': 0.6711264193502249,
                                   'J-Recall': 0.7317073170731707,
                                   'J-Decay': 0.4576532776429428,
                                   'F-Mean': 0.7130148939973819,
                                   'F-Recall': 1.0,
                                   'F-Decay': 0.31827407769444593}},
 'shift': {'car-shadow_1': {'J-Mean': 0.902970086339373,
                            'J-Recall': 1.0,
                            'J-Decay': 0.039606654674328,
                            'F-Mean': 1.0,
                            'F-Recall': 1.0,
                            'F-Decay': 0.0},
           'motocross-jump_1': {'J-Mean': 0.8594692531473022,
                                'J-Recall': 1.0,
                                'J-Decay': 0.06942186075239654,
                                'F-Mean': 0.9927801114324516,
                                'F-Recall': 1.0,
                                'F-Decay': -5.160846378804429e-05},
           'scooter-black_1': {'J-Mean': 0.8592324552220492,
                               'J-Recall': 1.0,
                               'J-Decay': -0.05181561797991352,
                               'F-Mean': 1.0,
                               'F-Recall': 1.0,
                               'F-Decay': 0.0}},
 'erode_dilate': {'car-shadow_1': {'J-Mean': 0.9093755909271107,
                                   'J-Recall': 1.0,
                                   'J-Decay': 0.03534561087583021,
                                   'F-Mean': 0.9922174976162679,
                                   'F-Recall': 1.0,
                                   'F-Decay': -0.017311065684251226},
                  'motocross-jump_1': {'J-Mean': 0.8782778117469574,
                                       'J-Recall': 1.0,
                                       'J-Decay': 0.0498815148605386,
                                       'F-Mean': 0.9273255304329688,
                                       'F-Recall': 1.0,
                                       'F-Decay': 0.05320126291833016},
                  'scooter-black_1': {'J-Mean': 0.8772587635365784,
                                      'J-Recall': 1.0,
                                      'J-Decay': -0.025515352402494584,
                                      'F-Mean': 0.9695753215755862,
                                      'F-Recall': 1.0,
                                      'F-Decay': 0.03636930140350925}},
 'blank': {'car-shadow_1': {'J-Mean': 0.5886050294794363,
                            'J-Recall': 0.5789473684210527,
                            'J-Decay': -0.09220335675253699,
                            'F-Mean': 0.5789473684210527,
                            'F-Recall': 0.5789473684210527,
                            'F-Decay': -0.09999999999999998},
           'motocross-jump_1': {'J-Mean': 0.6157073010394839,
                                'J-Recall': 0.5789473684210527,
                                'J-Decay': -0.08173960772833722,
                                'F-Mean': 0.5789473684210527,
                                'F-Recall': 0.5789473684210527,
                                'F-Decay': -0.09999999999999998},
           'scooter-black_1': {'J-Mean': 0.5900885479141676,
                               'J-Recall': 0.5853658536585366,
                               'J-Decay': -0.17550275885316868,
                               'F-Mean': 0.5853658536585366,
                               'F-Recall': 0.5853658536585366,
                               'F-Decay': -0.18181818181818188}},
 'all_empty': {'car-shadow_1': {'J-Mean': 0.0,
                                'J-Recall': 0.0,
                                'J-Decay': 0.0,
                                'F-Mean': 0.0,
                                'F-Recall': 0.0,
                                'F-Decay': 0.0},
               'motocross-jump_1': {'J-Mean': 0.0,
                                    'J-Recall': 0.0,
                                    'J-Decay': 0.0,
                                    'F-Mean': 0.0,
                                    'F-Recall': 0.0,
                                    'F-Decay': 0.0},
               'scooter-black_1': {'J-Mean': 0.0,
                                   'J-Recall': 0.0,
                                   'J-Decay': 0.0,
                                   'F-Mean': 0.0,
                                   'F-Recall': 0.0,
                                   'F-Decay': 0.0}},
 'full': {'car-shadow_1': {'J-Mean': 0.060458844344467744,
                           'J-Recall': 0.0,
                           'J-Decay': 0.05276761319281811,
                           'F-Mean': 0.0,
                           'F-Recall': 0.0,
                           'F-Decay': 0.0},
          'motocross-jump_1': {'J-Mean': 0.22496321490200907,
                               'J-Recall': 0.07894736842105263,
                               'J-Decay': 0.01470360070257612,
                               'F-Mean': 0.0,
                               'F-Recall': 0.0,
                               'F-Decay': 0.0},
          'scooter-black_1': {'J-Mean': 0.0844996525199444,
                              'J-Recall': 0.0,
                              'J-Decay': -0.12238662976367894,
                              'F-Mean': 0.0,
                              'F-Recall': 0.0,
                              'F-Decay': 0.0}},
 'multi': {'motocross-jump_1': {'J-Mean': 0.7347255528197577,
                                'J-Recall': 0.7894736842105263,
                                'J-Decay': -0.020568180098833877,
                                'F-Mean': 0.8903295862192494,
                                'F-Recall': 0.868421052631579,
                                'F-Decay': -0.016663531171418722},
           'motocross-jump_2': {'J-Mean': 0.6826692596806447,
                                'J-Recall': 0.7105263157894737,
                                'J-Decay': -0.09800070360911883,
                                'F-Mean': 0.7723278934328822,
                                'F-Recall': 0.7368421052631579,
                                'F-Decay': -0.06253052851835417},
           'scooter-black_1': {'J-Mean': 0.6910053195528861,
                               'J-Recall': 0.7317073170731707,
                               'J-Decay': 0.01758352492293469,
                               'F-Mean': 0.8353504762170458,
                               'F-Recall': 0.8048780487804879,
                               'F-Decay': 0.06117903525329471},
           'scooter-black_2': {'J-Mean': 0.6723382011940838,
                               'J-Recall': 0.7073170731707317,
                               'J-Decay': -0.08769749490777556,
                               'F-Mean': 0.7384861700773226,
                               'F-Recall': 0.7073170731707317,
                               'F-Decay': -0.029730055655796117},
           'kite-surf_1': {'J-Mean': 0.7001813634507519,
                           'J-Recall': 0.8125,
                           'J-Decay': -0.011324462324926787,
                           'F-Mean': 0.8137045914359247,
                           'F-Recall': 0.8125,
                           'F-Decay': -0.004171725091235756},
           'kite-surf_2': {'J-Mean': 0.7266361342096684,
                           'J-Recall': 0.75,
                           'J-Decay': -0.11094137185981823,
                           'F-Mean': 0.8157667794723392,
                           'F-Recall': 0.8125,
                           'F-Decay': 0.002358656127592118},
           'kite-surf_3': {'J-Mean': 0.8108529744890168,
                           'J-Recall': 0.875,
                           'J-Decay': 0.014957762023737442,
                           'F-Mean': 0.875,
                           'F-Recall': 0.875,
                           'F-Decay': 0.0}},
 'multi_missing': {'motocross-jump_1': {'J-Mean': 0.9711410649961508,
                                        'J-Recall': 0.9736842105263158,
                                        'J-Decay': 0.0,
                                        'F-Mean': 0.9945694190600735,
                                        'F-Recall': 1.0,
                                        'F-Decay': 0.0},
                   'motocross-jump_2': {'J-Mean': 0.0,
                                        'J-Recall': 0.0,
                                        'J-Decay': 0.0,
                                        'F-Mean': 0.0,
                                        'F-Recall': 0.0,
                                        'F-Decay': 0.0},
                   'scooter-black_1': {'J-Mean': 1.0,
                                       'J-Recall': 1.0,
                                       'J-Decay': 0.0,
                                       'F-Mean': 1.0,
                                       'F-Recall': 1.0,
                                       'F-Decay': 0.0},
                   'scooter-black_2': {'J-Mean': 0.0,
                                       'J-Recall': 0.0,
                                       'J-Decay': 0.0,
                                       'F-Mean': 0.0,
                                       'F-Recall': 0.0,
                                       'F-Decay': 0.0},
                   'kite-surf_1': {'J-Mean': 0.9854007240309727,
                                   'J-Recall': 1.0,
                                   'J-Decay': -0.02695171474162905,
                                   'F-Mean': 0.9969332848382226,
                                   'F-Recall': 1.0,
                                   'F-Decay': -0.007273172918685233},
                   'kite-surf_2': {'J-Mean': 0.3958333333333333,
                                   'J-Recall': 0.3958333333333333,
                                   'J-Decay': -0.46153846153846156,
                                   'F-Mean': 0.3958333333333333,
                                   'F-Recall': 0.3958333333333333,
                                   'F-Decay': -0.46153846153846156},
                   'kite-surf_3': {'J-Mean': 0.0,
                                   'J-Recall': 0.0,
                                   'J-Decay': 0.0,
                                   'F-Mean': 0.0,
                                   'F-Recall': 0.0,
                                   'F-Decay': 0.0}},
 'seed_880': {'car-shadow_1': {'J-Mean': 0.9284824684714967,
                               'J-Recall': 1.0,
                               'J-Decay': 0.10976364277992157,
                               'F-Mean': 0.9210227024862329,
                               'F-Recall': 1.0,
                               'F-Decay': 0.16232964454456977},
              'motocross-jump_1': {'J-Mean': 0.8156120140796408,
                                   'J-Recall': 1.0,
                                   'J-Decay': 0.003880500891049743,
                                   'F-Mean': 0.6323622642241817,
                                   'F-Recall': 0.8947368421052632,
                                   'F-Decay': 0.05330271673953657},
              'scooter-black_1': {'J-Mean': 0.6712408575720006,
                                  'J-Recall': 0.7317073170731707,
                                  'J-Decay': 0.45758242267349464,
                                  'F-Mean': 0.7272282691007367,
                                  'F-Recall': 1.0,
                                  'F-Decay': 0.31100450954224423}}}

CSV_GLOBAL = {'osvos_bin_all': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
                  '0.766,0.756,0.884,0.172,0.776,0.922,0.160\n',
 'osvos_bin': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
              '0.778,0.805,0.911,0.191,0.750,0.939,0.180\n',
 'shift': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.936,0.874,1.000,0.019,0.998,1.000,-0.000\n',
 'erode_dilate': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
                 '0.926,0.888,1.000,0.020,0.963,1.000,0.024\n',
 'blank': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
          '0.590,0.598,0.581,-0.116,0.581,0.581,-0.127\n',
 'all_empty': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
              '0.000,0.000,0.000,0.000,0.000,0.000,0.000\n',
 'full': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.062,0.123,0.026,-0.018,0.000,0.000,0.000\n',
 'multi': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
          '0.769,0.717,0.768,-0.042,0.820,0.802,-0.007\n',
 'multi_missing': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
                  '0.481,0.479,0.481,-0.070,0.484,0.485,-0.067\n',
 'seed_880': 'J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n'
             '0.783,0.805,0.911,0.190,0.760,0.965,0.176\n'}

CSV_PER_SEQUENCE = {'osvos_bin_all': 'Sequence,J-Mean,F-Mean\n'
                  'blackswan_1,0.943,0.974\n'
                  'bmx-trees_1,0.541,0.766\n'
                  'breakdance_1,0.727,0.756\n'
                  'camel_1,0.859,0.891\n'
                  'car-roundabout_1,0.890,0.827\n'
                  'car-shadow_1,0.928,0.917\n'
                  'cows_1,0.952,0.957\n'
                  'dance-twirl_1,0.641,0.716\n'
                  'dog_1,0.711,0.691\n'
                  'drift-chicane_1,0.774,0.829\n'
                  'drift-straight_1,0.665,0.707\n'
                  'goat_1,0.869,0.876\n'
                  'horsejump-high_1,0.774,0.872\n'
                  'kite-surf_1,0.598,0.660\n'
                  'libby_1,0.623,0.751\n'
                  'motocross-jump_1,0.816,0.621\n'
                  'paragliding-launch_1,0.559,0.442\n'
                  'parkour_1,0.773,0.741\n'
                  'scooter-black_1,0.671,0.713\n'
                  'soapbox_1,0.802,0.819\n',
 'osvos_bin': 'Sequence,J-Mean,F-Mean\n'
              'car-shadow_1,0.928,0.917\n'
              'motocross-jump_1,0.816,0.621\n'
              'scooter-black_1,0.671,0.713\n',
 'shift': 'Sequence,J-Mean,F-Mean\n'
          'car-shadow_1,0.903,1.000\n'
          'motocross-jump_1,0.859,0.993\n'
          'scooter-black_1,0.859,1.000\n',
 'erode_dilate': 'Sequence,J-Mean,F-Mean\n'
                 'car-shadow_1,0.909,0.992\n'
                 'motocross-jump_1,0.878,0.927\n'
                 'scooter-black_1,0.877,0.970\n',
 'blank': 'Sequence,J-Mean,F-Mean\n'
          'car-shadow_1,0.589,0.579\n'
          'motocross-jump_1,0.616,0.579\n'
          'scooter-black_1,0.590,0.585\n',
 'all_empty': 'Sequence,J-Mean,F-Mean\n'
              'car-shadow_1,0.000,0.000\n'
              'motocross-jump_1,0.000,0.000\n'
              'scooter-black_1,0.000,0.000\n',
 'full': 'Sequence,J-Mean,F-Mean\n'
         'car-shadow_1,0.060,0.000\n'
         'motocross-jump_1,0.225,0.000\n'
         'scooter-black_1,0.084,0.000\n',
 'multi': 'Sequence,J-Mean,F-Mean\n'
          'motocross-jump_1,0.735,0.890\n'
          'motocross-jump_2,0.683,0.772\n'
          'scooter-black_1,0.691,0.835\n'
          'scooter-black_2,0.672,0.738\n'
          'kite-surf_1,0.700,0.814\n'
          'kite-surf_2,0.727,0.816\n'
          'kite-surf_3,0.811,0.875\n',
 'multi_missing': 'Sequence,J-Mean,F-Mean\n'
                  'motocross-jump_1,0.971,0.995\n'
                  'motocross-jump_2,0.000,0.000\n'
                  'scooter-black_1,1.000,1.000\n'
                  'scooter-black_2,0.000,0.000\n'
                  'kite-surf_1,0.985,0.997\n'
                  'kite-surf_2,0.396,0.396\n'
                  'kite-surf_3,0.000,0.000\n',
 'seed_880': 'Sequence,J-Mean,F-Mean\n'
             'car-shadow_1,0.928,0.921\n'
             'motocross-jump_1,0.816,0.632\n'
             'scooter-black_1,0.671,0.727\n'}

# Wall time (s) of the official evaluation_method.py per case (2-core CPU, shared with other jobs)
OFFICIAL_SECONDS = {'osvos_bin_all': 26.37,
 'osvos_bin': 3.09,
 'shift': 3.62,
 'erode_dilate': 2.62,
 'blank': 2.67,
 'all_empty': 2.83,
 'full': 2.56,
 'multi': 7.24,
 'multi_missing': 5.59,
 'seed_880': 3.21}
