"""setup.py tells the truth: every install requirement is imported by lpcache, and every third-party module
lpcache imports is declared (install_requires, or an extra for optional back ends)."""
import ast
import functools
import importlib.metadata
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "lpcache")

#: Import name of distributions that are not installed here (e.g. tomli on Python >= 3.11).
FALLBACK_IMPORT_NAMES = {"tomli": "tomli", "scikit-image": "skimage", "pillow": "PIL", "opencv-python": "cv2"}


def _normalise(name) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _setup_keywords():
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    return {k.arg: k.value for k in call.keywords}


def _requirement_name(spec) -> str:
    return _normalise(re.split(r"[\s<>=!~;\[]", spec.strip(), 1)[0])


def install_requires():
    return [_requirement_name(s) for s in ast.literal_eval(_setup_keywords()["install_requires"])]


def extras():
    mapping = ast.literal_eval(_setup_keywords()["extras_require"])
    return {_requirement_name(s) for specs in mapping.values() for s in specs}


def imported_modules():
    """Top-level names of every absolute import in lpcache/ (including imports inside functions)."""
    names = set()
    for base, _, files in os.walk(PACKAGE):
        for file in files:
            if not file.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(base, file), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def third_party(modules):
    return {m for m in modules if m not in sys.stdlib_module_names and m != "lpcache"}


@functools.lru_cache(maxsize=1)
def packages_distributions():
    return importlib.metadata.packages_distributions()


def _distributions_of(module):
    found = packages_distributions().get(module)
    return {_normalise(d) for d in found} if found else {_normalise(module)}


def test_every_install_requirement_is_imported():
    modules = third_party(imported_modules())
    by_distribution = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            by_distribution.setdefault(_normalise(distribution), set()).add(module)
    unused = []
    for requirement in install_requires():
        names = by_distribution.get(requirement) or {FALLBACK_IMPORT_NAMES.get(requirement, requirement.replace("-", "_"))}
        if not names & modules:
            unused.append(requirement)
    assert not unused, f"declared in setup.py but imported nowhere in lpcache/: {unused}"


def test_every_third_party_import_is_declared():
    declared = set(install_requires()) | extras()
    undeclared = {m: sorted(_distributions_of(m)) for m in third_party(imported_modules())
                  if not _distributions_of(m) & declared}
    assert not undeclared, f"imported by lpcache/ but not declared in setup.py: {undeclared}"


def test_minimum_versions_cover_what_the_code_uses():
    specs = {_requirement_name(s): s for s in ast.literal_eval(_setup_keywords()["install_requires"])}
    source = "".join(open(os.path.join(base, f), encoding="utf-8").read()
                     for base, _, files in os.walk(PACKAGE) for f in files if f.endswith(".py"))
    if 'return_as="generator_unordered"' in source:
        assert re.search(r">=\s*1\.([4-9]|\d\d)", specs["joblib"]), specs["joblib"]
    if "import tomllib" in source:
        python = ast.literal_eval(_setup_keywords()["python_requires"])
        assert python.replace(" ", "") in (">=3.11", ">=3.12") or ("tomli" in specs and "import tomli" in source), \
            "tomllib needs Python 3.11: require it or fall back to tomli"


def test_cli_start_up_imports_no_torch_nor_h5py():
    """`lpcache score` and `--help` must start fast (the scorer's speed is measured as a whole process)."""
    import subprocess

    code = ("import sys, lpcache.cli; heavy = [m for m in ('torch', 'h5py', 'timm', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import lpcache.cli pulled in {out}"
