"""What the host reads on a stage's or a project's behalf (issue 10, items 1, 2 and 9).

Outputs that are not regular files are refused, never followed on the host, and bounded; what
a run recorded is made read-only and verified again before it is reused; project symlinks that
leave the project are refused unless the manifest lists them; the state folder is its owner's
alone; and the hash cache sees an in-place edit whose mtime was set back. Through the CLI as a
user runs it (`workbench run` in a subprocess), the local runner where Docker adds nothing,
real Docker (warm and cold) for the output symlink.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_cli import wb
from tests.test_pipeline_local import write_project

LOCAL = ("--runner", "local")
MIRROR_OFF = {"WORKBENCH_MLFLOW_URI": "off"}


def run_json(ws: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, dict | None]:
    import sys

    done = subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(ws), "run", "tiny", *args, "--json"],
                          capture_output=True, text=True, env={**os.environ, **MIRROR_OFF}, timeout=timeout)
    try:
        return done, json.loads(done.stdout)
    except ValueError:
        return done, None


def stage(record: dict, name: str) -> dict:
    return next(s for s in record["stages"] if s["stage"] == name)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file outside every workspace, as /etc/shadow is."""
    path = tmp_path / "host" / "secret.txt"
    path.parent.mkdir()
    path.write_text("root-only secret\n")
    path.chmod(0o600)
    return path


def fit_writing(make_output: str) -> str:
    """A fit stage that makes its declared model.json with `make_output` (Python, `out` is the
    path) and names it the model in artifacts.json itself (wb.log_artifact would look for the
    link's target, which a container does not see)."""
    return textwrap.dedent("""
        import json, os, wb
        out = wb.output_path("model.json")
        {make}
        json.dump([{{"name": "model.json", "kind": "model"}}], open(wb.output_path("artifacts.json"), "w"))
        wb.log_metrics({{"score": 0.9}})
    """).format(make=make_output)


# -- item 1: outputs ---------------------------------------------------------------------------

def test_an_output_symlink_to_a_host_file_fails_the_stage_and_registers_nothing(tmp_path, secret):
    write_project(tmp_path, **{"fit.py": fit_writing(f"os.symlink({str(secret)!r}, out)")})
    done, record = run_json(tmp_path, *LOCAL)
    assert done.returncode == 1, done.stderr
    fit = stage(record, "fit")
    assert fit["status"] == "failed"
    assert "model.json is a symbolic link" in fit["reason"] and str(secret) in fit["reason"]
    assert fit["artifacts"] == [], "nothing of the link's target is recorded"
    models = json.loads(wb(tmp_path, "models", "tiny", "--json", env=MIRROR_OFF).stdout)
    assert models == [], "no model version"


OUTPUT_TRAPS = {
    # name -> (code making `out`, words the stage's failure must say)
    "symlink to /dev/zero": ("os.symlink('/dev/zero', out)", "model.json is a symbolic link (to /dev/zero)"),
    "protocol file to /dev/zero": (
        "open(out, 'w').write('{}'); os.symlink('/dev/zero', wb.output_path('params.json'))",
        "params.json is a symbolic link (to /dev/zero)"),
    "FIFO": ("os.mkfifo(out)", "model.json is a FIFO"),
    "symlinked folder": ("open(out, 'w').write('{}'); os.symlink('/etc', wb.output_path('etc'))",
                         "etc is a symbolic link (to /etc)"),
    "hard link to a file outside": (
        "os.link(os.path.join(os.environ['WB_PROJECT_DIR'], '..', '..', 'outside.txt'), out)",
        "model.json is a hard link to a file outside the output folder"),
}


@pytest.mark.parametrize("trap", OUTPUT_TRAPS, ids=list(OUTPUT_TRAPS))
def test_outputs_that_are_not_files_of_their_own_are_refused_without_hanging(tmp_path, trap):
    """Before: /dev/zero hung the host's hash (no stage timeout covers it), the FIFO blocked it,
    the folder link and the hard link were recorded (or silently dropped) as outputs."""
    make, says = OUTPUT_TRAPS[trap]
    write_project(tmp_path, **{"fit.py": fit_writing(make)})
    outside = tmp_path / ".workbench" / "outside.txt"  # two levels above the local runner's snapshot
    outside.parent.mkdir()
    outside.write_text("not the stage's own file")
    try:
        done, record = run_json(tmp_path, *LOCAL, timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{trap}: the host hung reading the stage's outputs")
    assert done.returncode == 1, done.stderr
    fit = stage(record, "fit")
    assert fit["status"] == "failed" and says in fit["reason"], fit["reason"]


def test_recorded_outputs_are_read_only_and_verified_before_reuse(tmp_path):
    write_project(tmp_path)
    done, first = run_json(tmp_path, *LOCAL)
    assert done.returncode == 0, done.stderr
    prep_dir = Path(stage(first, "prep")["output_dir"])
    clean = prep_dir / "clean.txt"
    for path in (prep_dir, *prep_dir.iterdir()):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o555 if path.is_dir() else 0o444), f"{path}: {oct(mode)}"
        assert path.lstat().st_uid == os.getuid()

    # A process the stage left behind (or anyone) rewrites a recorded output anyway.
    clean.chmod(0o644)
    clean.write_text("A\nB\nX")
    shown = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert shown.returncode == 0, shown.stderr
    assert (f"warning: not reusing stage prep of run {first['id']}: its outputs in {prep_dir} hash to "
            in shown.stdout), shown.stdout
    assert "✓ prep succeeded" in shown.stdout, "run again"
    done, third = run_json(tmp_path, *LOCAL)
    assert [s["status"] for s in third["stages"]] == ["reused", "reused"], "the rerun's outputs are intact"
    assert stage(third, "prep")["reused_from_run"] == first["id"] + 1


def test_a_recorded_output_linked_elsewhere_is_still_reused(tmp_path):
    """A warm worker links recorded outputs into the read-only view of a stage running now; that
    extra name is not a change (the content is what reuse checks)."""
    write_project(tmp_path)
    done, first = run_json(tmp_path, *LOCAL)
    assert done.returncode == 0, done.stderr
    os.link(Path(stage(first, "prep")["output_dir"]) / "clean.txt", tmp_path / "held-by-a-running-stage")
    done, second = run_json(tmp_path, *LOCAL)
    assert [s["status"] for s in second["stages"]] == ["reused", "reused"], done.stdout


# -- item 2: project symlinks and the state folder -----------------------------------------------

def test_a_project_symlink_leading_outside_is_refused_before_the_run(tmp_path, secret):
    project = write_project(tmp_path)
    (project / "notes.txt").symlink_to(secret)
    (project / "hostname").symlink_to("../../../../../../../../etc/hostname")
    done = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert done.returncode == 3, (done.stdout, done.stderr)
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: {project}: 2 symlinks: hostname -> ../../../../../../../../etc/hostname "
                            "(outside the project)"), done.stderr
    assert f"notes.txt -> {secret} (outside the project)" in first
    assert 'external_links = ["hostname", "notes.txt"]' in first and "Traceback" not in done.stderr
    runs = json.loads(wb(tmp_path, "runs", "--json").stdout)
    assert runs == [], "bad input: no run is recorded"
    assert not list((tmp_path / ".workbench").glob("objects/*/*")), "nothing was copied in"


def test_a_symlinked_folder_leaving_the_project_and_a_link_loop_are_refused(tmp_path):
    project = write_project(tmp_path)
    (project / "etc").symlink_to("/etc", target_is_directory=True)
    done = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert done.returncode == 3 and "symlink etc -> /etc (outside the project)" in done.stderr, done.stderr

    (project / "etc").unlink()
    (project / "again").symlink_to(".", target_is_directory=True)
    done = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert done.returncode == 3 and "symlink again -> . (a loop" in done.stderr, done.stderr


def test_listed_external_links_and_links_inside_the_project_are_followed(tmp_path):
    elsewhere = tmp_path / "data-lake"
    (elsewhere / "daily").mkdir(parents=True)
    (elsewhere / "daily" / "big.txt").write_text("kept elsewhere\n")
    (elsewhere / "daily" / "escape").symlink_to("/etc/hostname")  # inside a listed folder, still out
    manifest = textwrap.dedent("""
        [project]
        name = "tiny"
        external_links = ["lake"]

        [stages.prep]
        command = "python prep.py"
        inputs = ["**/*.txt", "prep.py"]
        outputs = ["seen.json"]
    """)
    prep = textwrap.dedent("""
        import json, os, wb
        found = sorted(os.path.join(d, f)[2:] for d, _, fs in os.walk(".") for f in fs)
        json.dump({p: open(p).read() for p in found if p.endswith(".txt")}, open(wb.output_path("seen.json"), "w"))
    """)
    project = write_project(tmp_path, **{"workbench.toml": manifest, "prep.py": prep})
    (project / "src").mkdir()
    (project / "src" / "helper.txt").write_text("own code\n")
    (project / "alias.txt").symlink_to("data.txt")
    (project / "lib").symlink_to("src", target_is_directory=True)
    (project / "lake").symlink_to(elsewhere, target_is_directory=True)
    (project / "debug.log").symlink_to("/dev/null")  # not a file a snapshot copies: left out, as before

    refused = wb(tmp_path, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert refused.returncode == 3 and "symlink lake/daily/escape -> /etc/hostname (outside the project)" \
        in refused.stderr, refused.stderr
    (elsewhere / "daily" / "escape").unlink()

    done, record = run_json(tmp_path, *LOCAL)
    assert done.returncode == 0, done.stderr
    seen = json.loads((Path(stage(record, "prep")["output_dir"]) / "seen.json").read_text())
    assert seen == {"alias.txt": "a\nb\nc\n", "data.txt": "a\nb\nc\n", "lake/daily/big.txt": "kept elsewhere\n",
                    "lib/helper.txt": "own code\n", "src/helper.txt": "own code\n"}


def test_external_links_must_be_paths_inside_the_project(tmp_path):
    project = write_project(tmp_path)
    manifest = project / "workbench.toml"
    manifest.write_text(manifest.read_text().replace('name = "tiny"', 'name = "tiny"\nexternal_links = ["../x"]'))
    done = wb(tmp_path, "run", "tiny", *LOCAL)
    assert done.returncode == 3
    assert done.stderr.strip() == (f"error: {manifest}: project.external_links: '../x' must be the path of a "
                                   "symlink inside the project, relative to its folder")


@pytest.fixture
def open_tmp():
    """A folder other users may pass through (pytest's own tmp folders are 0700)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="wb-state-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="reading as another user needs root (runuser)")
def test_the_state_folder_is_its_owners_alone(open_tmp):
    project = write_project(open_tmp)
    env = project / ".env"
    env.write_text("TOKEN=hunter2\n")
    env.chmod(0o600)
    state = open_tmp / ".workbench"
    state.mkdir()
    state.chmod(0o755)  # made looser before (by an older workbench, or by hand)
    done = wb(open_tmp, "run", "tiny", *LOCAL, env=MIRROR_OFF)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    sha = hashlib.sha256(b"TOKEN=hunter2\n").hexdigest()
    obj = state / "objects" / sha[:2] / sha[2:]
    assert obj.read_text() == "TOKEN=hunter2\n"
    as_nobody = subprocess.run(["runuser", "-u", "nobody", "--", "cat", str(obj)], capture_output=True, text=True)
    assert as_nobody.returncode != 0 and "Permission denied" in as_nobody.stderr, as_nobody
    assert "hunter2" not in as_nobody.stdout
    fresh = open_tmp / "other"
    fresh.mkdir()
    write_project(fresh)
    assert wb(fresh, "runs").returncode == 0
    assert stat.S_IMODE((fresh / ".workbench").stat().st_mode) == 0o700, "created so"


# -- item 9: the hash cache ----------------------------------------------------------------------

def test_an_in_place_edit_with_its_mtime_set_back_is_seen(tmp_path):
    project = write_project(tmp_path)
    data = project / "data.txt"
    long_ago = time.time_ns() - 60 * 10**9
    os.utime(data, ns=(long_ago, long_ago))  # an old file: before, its stat was trusted at once
    done, first = run_json(tmp_path, *LOCAL)
    assert done.returncode == 0, done.stderr

    with open(data, "r+b") as fh:  # same inode, same size
        fh.write(b"x\ny\nz\n")
    os.utime(data, ns=(long_ago, long_ago))  # and the old mtime back
    done, second = run_json(tmp_path, *LOCAL)
    assert done.returncode == 0, done.stderr
    prep = stage(second, "prep")
    assert prep["status"] == "succeeded", "the edit is a change"
    recorded = {f["path"]: f["sha256"] for f in prep["inputs"]}
    assert recorded["data.txt"] == hashlib.sha256(b"x\ny\nz\n").hexdigest()


@pytest.mark.parametrize("via", ["StatHasher", "ObjectStore"])
def test_the_hash_cache_keys_on_the_ctime(tmp_path, monkeypatch, via):
    """With the racy window closed, only the ctime in the key tells the two contents apart."""
    from workbench.adapters import hash_cache, object_store

    monkeypatch.setattr(hash_cache, "RACY_WINDOW_NS", 0)
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    st = path.stat()
    if via == "StatHasher":
        hasher = hash_cache.StatHasher()
        digest = hasher.digest
    else:
        store = object_store.ObjectStore(tmp_path / "state")
        digest = lambda p: store.ingest(p, p.stat()).sha256  # noqa: E731
    assert digest(path) == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    time.sleep(0.02)  # past the file system's timestamp tick
    with open(path, "r+b") as fh:
        fh.write(b"x,y\n3,4\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_ino == st.st_ino
    assert digest(path) == hashlib.sha256(b"x,y\n3,4\n").hexdigest()


# -- item 1 on the real engine -------------------------------------------------------------------

@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_an_output_symlink_is_refused_in_docker(tmp_path, secret, docker_engine, docker_base_image, mode):
    """The stage runs as `nobody` in its container and cannot read the secret; before, the host
    hashed it through the link, registered it as a model and copied it into deploy and MLflow."""
    write_project(tmp_path, **{"fit.py": fit_writing(f"os.symlink({str(secret)!r}, out)")})
    extra = ["--cold"] if mode == "cold" else []
    env = {**os.environ, **MIRROR_OFF, "WORKBENCH_BASE_IMAGE": docker_base_image}
    import sys

    done = subprocess.run([sys.executable, "-m", "workbench", "--workspace", str(tmp_path), "run", "tiny",
                           "--runner", "docker", *extra, "--json"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 1, done.stderr
    record = json.loads(done.stdout)
    assert stage(record, "prep")["status"] == "succeeded", "the engine ran the project"
    fit = stage(record, "fit")
    assert fit["status"] == "failed" and f"model.json is a symbolic link (to {secret})" in fit["reason"], fit
    assert fit["artifacts"] == []
    assert json.loads(wb(tmp_path, "models", "tiny", "--json", env=MIRROR_OFF).stdout) == []
    prep_dir = Path(stage(record, "prep")["output_dir"])
    owners = {(p.lstat().st_uid, stat.S_IMODE(p.lstat().st_mode)) for p in (prep_dir, *prep_dir.iterdir())}
    assert owners <= {(os.getuid(), 0o555), (os.getuid(), 0o444)}, f"written as nobody, kept as the owner: {owners}"


def test_a_drift_score_cannot_hand_the_host_a_file_through_a_symlink(tmp_path):
    """The score command's metrics.json is read by the host like a stage's outputs: never
    through a symlink (here to numbers the command did not compute)."""
    from tests.test_drift import MANIFEST as SHOP, batch, in_production, sales
    from tests.test_drift import write_project as write_shop
    from workbench.services.drift import DriftService
    from workbench.services.session import WorkbenchSession

    planted = tmp_path / "host" / "metrics.json"
    planted.parent.mkdir()
    planted.write_text('{"accuracy": 0.0}')
    project = write_shop(tmp_path, SHOP.replace("on_drift = true", "on_drift = false"))
    (project / "score.py").write_text(f"import os, wb\nos.symlink({str(planted)!r}, wb.output_path('metrics.json'))\n")
    session = WorkbenchSession(tmp_path, runner="local")
    in_production(session)
    report = DriftService(session).check_batch("shop", batch(tmp_path, "b.csv", sales(300, seed=5))).report
    assert report.decay is None, "nothing was measured"
    assert "metrics.json is a symbolic link" in report.decay_note, report.decay_note
