#!/usr/bin/env python3
"""The tutorial's steps: lay one out, list them, render the chapters, carry a
change forward, and prove it all.

    tutorial.py list                 one line per step: N name +added -removed chapter
    tutorial.py step N [DIR]         lay out the source of step N (number or name) in DIR
                                     (default build/stepNN)
    tutorial.py diff N               the change that step N makes
    tutorial.py start DIR            an empty folder of your own, with a Makefile, to type into
    tutorial.py save N               after editing build/stepNN: rewrite step N's patch
    tutorial.py propagate N          carry step N's new change through every later step
    tutorial.py render [--check]     write the chapters from chapters/src and the steps
    tutorial.py clean                remove the step folders in build/ that nobody changed
    tutorial.py check                build and test every step, check the chapters (CI)
    tutorial.py check --coursework-only   only the coursework: graders, solutions, handout

The code exists once: steps/series names the steps in order, and
steps/NAME.patch turns the step before into step NAME. See tutorial/README.md.

No command here deletes or overwrites a file that someone changed: a folder
laid out by "step" or "start" carries a manifest (.tutorial) of what was laid,
and a command that would replace a file checks it first, and refuses.
"""
import concurrent.futures
import difflib
import glob
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TUTORIAL = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = os.path.dirname(TUTORIAL)
STEPS_DIR = os.path.join(TUTORIAL, "steps")
SERIES = os.path.join(STEPS_DIR, "series")
SOURCE_CHAPTERS = os.path.join(TUTORIAL, "chapters", "src")
CHAPTERS = os.path.join(TUTORIAL, "chapters")
BUILD = os.environ.get("TUTORIAL_BUILD", os.path.join(TUTORIAL, "build"))
# The files a step may contain; the last step must equal the project's own.
SOURCES = ["server.c", "ws.c", "ws.h", "notifier.c", "notifier.h"]
MANIFEST = ".tutorial"
# A step may change at most this many lines; more than LONG_STEP must say why.
MAX_STEP_LINES = 150
LONG_STEP = 80
MAX_CHAPTER_WORDS = 5000
# The coursework: briefs, graders, and the reference solutions, written
# against the top folder's server (what students start from).
COURSEWORK = os.path.join(TUTORIAL, "coursework")


# ==== The series ============================================================

class Step:
    def __init__(self, number, name, title):
        self.number = number
        self.name = name
        self.title = title
        self.patch_path = os.path.join(STEPS_DIR, f"{name}.patch")

    def patch(self):
        with open(self.patch_path) as text:
            return text.read()


def series():
    """The steps, in order, from steps/series ("name<TAB>Title" lines)."""
    steps = []
    with open(SERIES) as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            name, _, title = line.partition("\t")
            steps.append(Step(len(steps) + 1, name.strip(), title.strip()))
    return steps


def find_step(reference):
    """The step called reference, or numbered reference ("5" or "listen-socket")."""
    steps = series()
    for step in steps:
        if reference in (step.name, str(step.number)):
            return step
    sys.exit(f"there is no step '{reference}': the steps are 1 to {len(steps)} "
             f"(make -C tutorial list names them)")


def changed_lines(patch):
    added = sum(1 for line in patch.splitlines()
                if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in patch.splitlines()
                  if line.startswith("-") and not line.startswith("---"))
    return added, removed


def apply_patch(patch, folder, where):
    """Applies a patch exactly (no fuzz, no offset guessing beyond patch's
    own, no .orig files). Exits naming where it came from if it does not."""
    result = subprocess.run(["patch", "-p1", "-F0", "-N", "--no-backup-if-mismatch", "-s",
                             "-d", folder], input=patch, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{where} does not apply exactly:\n{result.stdout}{result.stderr}")


def lay_sources(number, folder):
    """Writes the sources of step number (0: none) into folder, which must
    hold none of them yet."""
    for step in series()[:number]:
        apply_patch(step.patch(), folder, f"step {step.number} ({step.name})")


def read_sources(folder):
    files = {}
    for name in SOURCES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            with open(path) as text:
                files[name] = text.read()
    return files


def unified_diff(old, new):
    """The patch that turns the sources old into new (dicts name -> text)."""
    lines = []
    for name in SOURCES:
        before = old.get(name, "").splitlines(True)
        after = new.get(name, "").splitlines(True)
        if before == after:
            continue
        lines.append(f"diff -ruN a/{name} b/{name}\n")
        lines += difflib.unified_diff(before, after, f"a/{name}", f"b/{name}")
    return "".join(lines)


# ==== Folders that belong to someone ========================================

def digest(path):
    with open(path, "rb") as data:
        return hashlib.sha256(data.read()).hexdigest()


def changed_files(folder):
    """The files in folder that differ from what the tutorial laid there (or
    that it did not lay), or None if no tutorial command made the folder."""
    manifest_path = os.path.join(folder, MANIFEST)
    if not os.path.exists(manifest_path):
        return None
    with open(manifest_path) as text:
        laid = json.load(text)["files"]
    changed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == MANIFEST or not os.path.isfile(path):
            continue
        if name in ("server",) or name.endswith(".o"):
            continue  # what "make" builds
        if laid.get(name) != digest(path):
            changed.append(name)
    changed += [name for name in laid if not os.path.exists(os.path.join(folder, name))]
    return changed


def refuse_if_owned(folder, action):
    """Exits, saying why, unless folder is absent, empty, or holds exactly
    what a tutorial command laid there."""
    if not os.path.isdir(folder) or not os.listdir(folder):
        return
    changed = changed_files(folder)
    if changed is None:
        sys.exit(f"{folder} already exists and was not made by the tutorial: not touching it. "
                 f"Choose another folder, or move it away yourself.")
    if changed:
        sys.exit(f"{folder} holds your changes to {', '.join(changed)}: not {action} it. "
                 f"Keep your work under another name, or move the folder away yourself.")


def write_makefile(folder, step):
    with open(os.path.join(TUTORIAL, "step.mk")) as text:
        makefile = text.read()
    makefile = makefile.replace("@TUTORIAL@", TUTORIAL).replace("@STEP@", step)
    with open(os.path.join(folder, "Makefile"), "w") as out:
        out.write(makefile)


def write_manifest(folder, step):
    files = {name: digest(os.path.join(folder, name)) for name in os.listdir(folder)
             if name != MANIFEST and os.path.isfile(os.path.join(folder, name))}
    with open(os.path.join(folder, MANIFEST), "w") as out:
        json.dump({"step": step, "files": files}, out, indent=1)
        out.write("\n")


def lay_out_step(step, folder):
    """Lays out step in folder, with a Makefile whose "make test" runs its tests."""
    refuse_if_owned(folder, "replacing")
    with tempfile.TemporaryDirectory() as scratch:
        lay_sources(step.number, scratch)
        if os.path.isdir(folder):
            shutil.rmtree(folder)  # refuse_if_owned() found nothing of anyone's
        shutil.copytree(scratch, folder)
    write_makefile(folder, str(step.number))
    write_manifest(folder, step.number)


def start(folder):
    """An empty folder of the student's own, with a Makefile to build and test."""
    if os.path.isdir(folder) and os.listdir(folder):
        sys.exit(f"{folder} is not empty: not touching it. Name a new folder, or an empty one.")
    os.makedirs(folder, exist_ok=True)
    write_makefile(folder, "")
    write_manifest(folder, 0)
    print(f"{folder} is yours. Type step 1 (chapter 1) into {folder}/server.c, then:\n"
          f"    cd {folder} && make && make test STEP=1")


def clean():
    """Removes the step folders of build/ that nobody changed; keeps the others."""
    for folder in sorted(glob.glob(os.path.join(BUILD, "step*"))):
        changed = changed_files(folder)
        if changed == []:
            shutil.rmtree(folder)
        else:
            what = "not made by the tutorial" if changed is None else f"changed: {', '.join(changed)}"
            print(f"kept {folder} ({what})")


# ==== Saving and carrying a change forward ==================================

def step_folder(step):
    return os.path.join(BUILD, f"step{step.number:02d}")


BEFORE = os.path.join(BUILD, "propagate", "before")


def save(step):
    """Rewrites step's patch from build/step(N-1) (laid out afresh in a
    scratch folder) to build/stepNN. The first save of a change also keeps
    every patch as it was, in build/propagate/before, for propagate; a save
    of another step before that change is propagated is refused, as the
    patches kept would no longer be what the later steps were."""
    folder = step_folder(step)
    if not os.path.isdir(folder):
        sys.exit(f"no {folder}: make step N={step.number} first, then edit it")
    saved = os.path.join(BEFORE, "STEP")
    if os.path.isfile(saved):
        with open(saved) as text:
            pending = int(text.read())
        if pending != step.number:
            sys.exit(f"step {pending} was saved and not carried forward yet: make propagate "
                     f"N={pending} first (or remove {os.path.dirname(BEFORE)} to drop that)")
    with tempfile.TemporaryDirectory() as before:
        lay_sources(step.number - 1, before)
        patch = unified_diff(read_sources(before), read_sources(folder))
    if not os.path.isdir(BEFORE):
        os.makedirs(BEFORE)
        for s in series():
            shutil.copy(s.patch_path, BEFORE)
        with open(saved, "w") as out:
            out.write(str(step.number))
    with open(step.patch_path, "w") as out:
        out.write(patch)
    write_manifest(folder, step.number)  # the folder is the step again
    added, removed = changed_lines(patch)
    print(f"wrote steps/{step.name}.patch (+{added} -{removed}); "
          f"now: make propagate N={step.number}")


def merge3(current, base, other):
    """git merge-file: the change from base to other, made to current.
    Returns (text, conflicts)."""
    with tempfile.TemporaryDirectory() as scratch:
        paths = []
        for label, text in (("current", current), ("base", base), ("other", other)):
            path = os.path.join(scratch, label)
            with open(path, "w") as out:
                out.write(text)
            paths.append(path)
        result = subprocess.run(["git", "merge-file", "-p", "-L", "with your change", "-L",
                                 "the step before, as it was", "-L", "this step, as it was"]
                                + paths, capture_output=True, text=True)
        if result.returncode < 0 or result.returncode > 127:
            sys.exit(f"git merge-file failed: {result.stderr}")
        return result.stdout, result.returncode


def merge_step(old_before, old_after, current):
    """The files of a later step with the change carried in: the change this
    step made (old_before to old_after), made to current. Returns (files,
    names of the files with conflicts)."""
    merged = {}
    conflicted = []
    for name in SOURCES:
        if name not in old_after and name not in current:
            continue
        text, conflicts = merge3(current.get(name, ""), old_before.get(name, ""),
                                 old_after.get(name, ""))
        merged[name] = text
        if conflicts:
            conflicted.append(name)
    return merged, conflicted


def stop_at_conflict(step, merged, conflicted):
    """Leaves the merged files, conflict markers and all, in build/stepNN for
    the author to resolve, and exits saying what to do."""
    folder = step_folder(step)
    refuse_if_owned(folder, "writing the merge into")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for name, text in merged.items():
        with open(os.path.join(folder, name), "w") as out:
            out.write(text)
    write_makefile(folder, str(step.number))
    write_manifest(folder, step.number)
    sys.exit(f"step {step.number} ({step.name}) changed the same lines as your change, in "
             f"{', '.join(conflicted)}. The merge, with conflict markers, is in {folder}: "
             f"resolve it there, then make save N={step.number} and make propagate "
             f"N={step.number}.")


def propagate(step):
    """After "save N": carries the change to step N forward through every
    later step with a three-way merge, and stops at the first conflict."""
    if not os.path.isdir(BEFORE):
        sys.exit(f"nothing to carry forward: make save N={step.number} first")
    steps = series()
    with tempfile.TemporaryDirectory() as scratch:
        old = os.path.join(scratch, "old")
        new = os.path.join(scratch, "new")
        os.makedirs(old)
        os.makedirs(new)
        for s in steps[:step.number]:
            with open(os.path.join(BEFORE, f"{s.name}.patch")) as text:
                apply_patch(text.read(), old, f"step {s.number} as it was")
            apply_patch(s.patch(), new, f"step {s.number}")
        for later in steps[step.number:]:
            old_before = read_sources(old)
            with open(os.path.join(BEFORE, f"{later.name}.patch")) as text:
                apply_patch(text.read(), old, f"step {later.number} as it was")
            current = read_sources(new)
            merged, conflicted = merge_step(old_before, read_sources(old), current)
            if conflicted:
                stop_at_conflict(later, merged, conflicted)
            with open(later.patch_path, "w") as out:
                out.write(unified_diff(current, merged))
            for name, text in merged.items():
                with open(os.path.join(new, name), "w") as out:
                    out.write(text)
            print(f"carried into step {later.number} ({later.name})")
        last = read_sources(new)
    shutil.rmtree(BEFORE)
    differs = [name for name in SOURCES if last.get(name) != read_sources(PROJECT).get(name)]
    if differs:
        print(f"The last step now differs from the project's {', '.join(differs)}: the change "
              f"reached the finished server. Give the project's files the same change "
              f"(make step N={len(steps)} lays out the last step to copy from).")
    print("now: make render && make check")


# ==== Rendering the chapters ================================================

STEP_DIRECTIVE = re.compile(r"^<!--\s*step:\s*([\w-]+)\s*-->\s*$")
# "{{chapter slug}}" in a source becomes "chapter N", so that text never
# names a chapter by a number that moved; "<!-- chapter-table -->" becomes the
# table of every chapter and the steps it adds.
CHAPTER_REFERENCE = re.compile(r"\{\{chapter ([\w-]+)\}\}")
CHAPTER_TABLE = "<!-- chapter-table -->"


def chapter_order():
    with open(os.path.join(SOURCE_CHAPTERS, "ORDER")) as text:
        return [line.strip() for line in text if line.strip() and not line.startswith("#")]


def chapter_sources():
    """(number, slug, text) of each chapter source, in reading order."""
    chapters = []
    for number, slug in enumerate(chapter_order()):
        with open(os.path.join(SOURCE_CHAPTERS, f"{slug}.md")) as text:
            chapters.append((number, slug, text.read()))
    return chapters


def step_chapters():
    """For each step name: (chapter number, chapter title)."""
    found = {}
    for number, _, text in chapter_sources():
        title = text.splitlines()[0].lstrip("# ").strip()
        for line in text.splitlines():
            directive = STEP_DIRECTIVE.match(line)
            if directive:
                found[directive.group(1)] = (number, title)
    return found


def step_index():
    """What the tests need to point a student at the text: for each step
    number, its name, title, and the chapter that shows it."""
    where = step_chapters()
    return {step.number: {"name": step.name, "title": step.title,
                          "chapter": where.get(step.name, (None, None))[0],
                          "chapter_title": where.get(step.name, (None, None))[1]}
            for step in series()}


def step_heading(step):
    return f"Step {step.number}: {step.title}"


def render_step(step):
    return (f"### {step_heading(step)}\n\n"
            f"Step `{step.name}`. Its complete change:\n\n"
            f"<!-- patch {step.name} -->\n"
            f"```diff\n{step.patch()}```\n\n"
            f"Type it into your folder, then build and test: "
            f"`make && make test STEP={step.number}`\n")


def chapter_table(steps_by_name):
    rows = ["| chapter | steps |", "|---|---|"]
    for number, slug, text in chapter_sources():
        title = text.splitlines()[0].lstrip("# ").strip()
        shown = [steps_by_name[m.group(1)].number for m in map(STEP_DIRECTIVE.match,
                 text.split("\n")) if m and m.group(1) in steps_by_name]
        steps = "" if not shown else (f"{shown[0]}" if len(shown) == 1
                                      else f"{shown[0]} to {shown[-1]}")
        rows.append(f"| [{number}. {title}]({number:02d}-{slug}.md) | {steps} |")
    return "\n".join(rows)


def resolve_references(text, number):
    slugs = {slug: n for n, slug, _ in chapter_sources()}

    def reference(match):
        if match.group(1) not in slugs:
            sys.exit(f"chapter {number} refers to a chapter '{match.group(1)}' that is not in "
                     f"chapters/src/ORDER")
        return f"chapter {slugs[match.group(1)]}"
    return CHAPTER_REFERENCE.sub(reference, text)


def render_chapter(number, text, steps_by_name):
    text = resolve_references(text, number)
    if CHAPTER_TABLE in text:
        text = text.replace(CHAPTER_TABLE, chapter_table(steps_by_name))
    lines = text.split("\n")
    title = lines[0].lstrip("# ").strip()
    shown = [steps_by_name[m.group(1)] for m in map(STEP_DIRECTIVE.match, lines)
             if m and m.group(1) in steps_by_name]
    if shown:
        first, last = shown[0].number, shown[-1].number
        which = f"step {first}" if first == last else f"steps {first} to {last}"
        intro = (f"> **Type along:** this chapter adds {which} to your folder. Type each step's "
                 f"change as it is shown (lines starting with `+` are added, `-` removed), then "
                 f"run `make && make test STEP=N` in your folder. Chapter 0 shows how to start "
                 f"one; `make -C tutorial step N={first - 1 if first > 1 else 1}` lays out where "
                 f"this chapter starts.\n")
    else:
        intro = "> **No step here:** this chapter does not change the server's code.\n"
    out = [f"# Chapter {number}: {title}", "",
           "<!-- Rendered from chapters/src by make -C tutorial render: edit the source. -->", "",
           intro]
    for line in lines[1:]:
        directive = STEP_DIRECTIVE.match(line)
        if directive:
            name = directive.group(1)
            if name not in steps_by_name:
                sys.exit(f"chapter {number} shows a step '{name}' that is not in steps/series")
            out.append(render_step(steps_by_name[name]).rstrip("\n"))
        else:
            out.append(line)
    return "\n".join(out)


def rendered_chapters():
    """{file name: text} of every chapter, rendered."""
    steps_by_name = {step.name: step for step in series()}
    return {f"{number:02d}-{slug}.md": render_chapter(number, text, steps_by_name)
            for number, slug, text in chapter_sources()}


def render(check_only=False):
    """Writes the rendered chapters, or (check_only) lists those out of date."""
    wanted = rendered_chapters()
    stale = []
    for name, text in wanted.items():
        path = os.path.join(CHAPTERS, name)
        current = open(path).read() if os.path.exists(path) else None
        if current != text:
            stale.append(name)
            if not check_only:
                with open(path, "w") as out:
                    out.write(text)
    extra = [os.path.basename(p) for p in glob.glob(os.path.join(CHAPTERS, "*.md"))
             if os.path.basename(p) not in wanted]
    for name in extra:
        stale.append(name)
        if not check_only:
            os.remove(os.path.join(CHAPTERS, name))
    return stale


# ==== Listing ===============================================================

def list_steps():
    where = step_chapters()
    sizes = []
    for step in series():
        added, removed = changed_lines(step.patch())
        sizes.append(added + removed)
        chapter = where.get(step.name, (None,))[0]
        print(f"{step.number:3d} {step.name:40s} +{added:<4d} -{removed:<4d} "
              f"chapter {chapter if chapter is not None else '?'}")
    print(f"{len(sizes)} steps; changed lines per step: median {statistics.median(sizes):g}, "
          f"largest {max(sizes)}")


# ==== The check ==============================================================

class Tally:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")
        return ok


def build(folder, tally, what):
    """Builds folder warning-free (-Werror) with its own Makefile."""
    ok, output = build_quietly(folder)
    if not ok:
        print(output)
    return tally.record(ok, f"{what} builds without warnings")


def build_quietly(folder):
    """(built, what the compiler said) for folder, warning-free (-Werror)."""
    result = subprocess.run(["make", "-s", "-C", folder, "CFLAGS=-O2 -g -Werror"],
                            capture_output=True, text=True)
    return result.returncode == 0, result.stdout + result.stderr


def test_quietly(folder, step, only_new):
    """(passed, failed, output) of make test STEP=N in folder, as a student
    runs it; or (only_new) of just the tests that start at this step.
    (None, None, output) if the tests did not run."""
    if only_new:
        command = [sys.executable, os.path.join(TUTORIAL, "tests", "test_steps.py"),
                   str(step.number), os.path.join(folder, "server"), "--only-new"]
    else:
        command = ["make", "-s", "-C", folder, "test", f"STEP={step.number}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    counts = re.search(r"^(\d+) passed, (\d+) failed$", result.stdout, re.M)
    output = result.stdout + result.stderr
    if counts is None:
        return None, None, output
    return int(counts.group(1)), int(counts.group(2)), output


def build_and_test(folder, step, only_new):
    """Builds a copy of a typed-along step and runs its tests; the result,
    for the caller to count."""
    built, output = build_quietly(folder)
    if not built:
        return step, False, None, None, output
    passed, failed, test_output = test_quietly(folder, step, only_new)
    return step, True, passed, failed, test_output


PATCH_BLOCK = re.compile(r"^<!-- patch ([\w-]+) -->\n```diff\n(.*?)^```$", re.M | re.S)

# Steps are built and tested in parallel: a test mostly waits (for a timeout,
# for a server to answer), and the machine has at least two cores.
WORKERS = 3


def type_along(rendered, scratch, tally):
    """Starts an empty folder and applies, in order, only what the rendered
    chapters show the reader. After each step a copy of the folder is built
    and the tests that start at that step run against it; at the last step of
    each chapter, every test that holds for it (make test STEP=N, as a
    student runs it). Returns the folder and the number of step tests run."""
    folder = os.path.join(scratch, "typed-along")
    start(folder)
    steps_by_name = {step.name: step for step in series()}
    shown = []
    jobs = []
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        for name in sorted(rendered):
            matches = list(PATCH_BLOCK.finditer(rendered[name]))
            for index, match in enumerate(matches):
                step = steps_by_name.get(match.group(1))
                if not tally.record(step is not None,
                                    f"{name}: a patch of no step, {match.group(1)}"):
                    continue
                shown.append(step.number)
                apply_patch(match.group(2), folder, f"{name}'s step {step.number} ({step.name})")
                copy = os.path.join(scratch, "typed", f"{step.number:03d}")
                shutil.copytree(folder, copy)
                end_of_chapter = index == len(matches) - 1
                jobs.append(pool.submit(build_and_test, copy, step, not end_of_chapter))
        tests = 0
        for job in jobs:
            step, built, passed, failed, output = job.result()
            print(f"== step {step.number} ({step.name}), typed along")
            if not tally.record(built, f"step {step.number} typed along builds without "
                                f"warnings"):
                print(output)
                continue
            if passed is None or failed:
                print(output)
            if not tally.record(passed is not None, f"step {step.number}'s tests ran"):
                continue
            tally.passed += passed
            tally.failed += failed
            tests += passed + failed
    expected = [step.number for step in series()]
    tally.record(shown == expected, f"the chapters show every step once, in order "
                 f"(shown: {shown})")
    return folder, tests


def check_quotes(rendered, scratch, tally):
    """Every C block names the step and file it quotes, and appears there
    verbatim; so does every block marked as a project file."""
    marker = re.compile(r"<!--\s*(?:step\s+([\w-]+)|file):\s*([\w./-]+)\s*-->")
    fence = re.compile(r"^```(\w*)\s*$")
    count = 0
    steps_by_name = {step.name: step for step in series()}
    for name, text in sorted(rendered.items()):
        lines = text.split("\n")
        i = 0
        while i < len(lines):
            opening = fence.match(lines[i])
            if not opening:
                i += 1
                continue
            language = opening.group(1)
            found = marker.search(lines[i - 1]) if i > 0 else None
            is_patch = i > 0 and lines[i - 1].startswith("<!-- patch ")
            start_line = i + 1
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            if is_patch or (language != "c" and found is None):
                continue  # diffs are checked by typing along; shell, output, C#
            count += 1
            where = f"{name}:{start_line}"
            if not tally.record(found is not None, f"{where}: C block without a marker"):
                continue
            step_name, file_name = found.group(1), found.group(2)
            if step_name is None:
                path = os.path.join(PROJECT, file_name)
                origin = file_name
            else:
                step = steps_by_name.get(step_name)
                if not tally.record(step is not None, f"{where}: no step '{step_name}'"):
                    continue
                path = os.path.join(scratch, "steps", f"{step.number:02d}", file_name)
                origin = f"step {step.number}'s {file_name}"
            source = open(path).read() if os.path.exists(path) else ""
            tally.record("\n".join(body) + "\n" in source, f"{where}: block not found in {origin}")
    return count


def check_sizes(tally):
    where = step_chapters()
    for step in series():
        added, removed = changed_lines(step.patch())
        tally.record(added + removed <= MAX_STEP_LINES,
                     f"step {step.number} ({step.name}) changes {added + removed} lines "
                     f"(at most {MAX_STEP_LINES})")
        tally.record(step.name in where, f"no chapter shows step {step.number} ({step.name})")
    names = [step.name for step in series()]
    tally.record(len(names) == len(set(names)), "two steps have the same name")
    patches = {os.path.basename(p)[:-len(".patch")]
               for p in glob.glob(os.path.join(STEPS_DIR, "*.patch"))}
    tally.record(patches == set(names), f"steps/ holds patches that are not in the series: "
                 f"{sorted(patches - set(names))}, or misses {sorted(set(names) - patches)}")


def check_words(rendered, tally):
    for name, text in sorted(rendered.items()):
        words = len(text.split())
        tally.record(words <= MAX_CHAPTER_WORDS,
                     f"{name} has {words} words (at most {MAX_CHAPTER_WORDS}, code included)")


def check_last_step(folder, tally):
    """The last step is the project's own server, byte for byte."""
    mine, theirs = read_sources(folder), read_sources(PROJECT)
    for name in SOURCES:
        tally.record(mine.get(name) == theirs.get(name),
                     f"the last step's {name} differs from ../{name}")


def run_project_tests(folder, tally):
    """The project's integration, reliability and conformance suites, against
    the last step."""
    server = os.path.join(folder, "server")
    subprocess.run(["make", "-s", "-C", PROJECT, "test-programs"], check=True)
    for program in ["integration_tests", "reliability_tests", "conformance_tests"]:
        result = subprocess.run([os.path.join("tests", program)], cwd=PROJECT,
                                env=dict(os.environ, SERVER=server), capture_output=True,
                                text=True, timeout=600)
        counts = re.search(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", result.stdout)
        if counts is None or result.returncode != 0:
            print(result.stdout + result.stderr)
        ok = counts is not None and result.returncode == 0
        tally.record(ok, f"the project's {program} against the last step")
        if counts:
            print(f"last step: {program}: {counts.group(0)}")


def check_planted_bug(scratch, tally):
    """A bug planted in the accept key of a copy of the last step makes
    "make test" fail with a message that says what was expected, what came
    back, and where the chapters explain it."""
    step = series()[-1]
    folder = os.path.join(scratch, "planted")
    lay_out_step(step, folder)
    with open(os.path.join(folder, "ws.c")) as text:
        source = text.read()
    planted = source.replace("258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                             "258EAFA5-E914-47DA-95CA-C5AB0DC85B12")
    tally.record(planted != source, "the GUID to plant a bug in")
    with open(os.path.join(folder, "ws.c"), "w") as out:
        out.write(planted)
    result = subprocess.run(["make", "-s", "-C", folder, "test"], capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    message = next((line for line in output.splitlines() if line.startswith("FAIL ")), "")
    print(f"planted bug in step {step.number}: {message}")
    tally.record(result.returncode != 0 and "expected" in message and " got " in message
                 and "see chapter" in message,
                 f"a planted bug in step {step.number} gives an expected/got message: {message!r}")


def check_folders_are_kept(scratch, tally):
    """A file edited in a laid-out step folder or in a student's folder
    survives every tutorial command that could touch it."""
    tool = [sys.executable, os.path.abspath(__file__)]
    env = dict(os.environ, TUTORIAL_BUILD=os.path.join(scratch, "build"))
    own = os.path.join(scratch, "mine")
    laid = os.path.join(scratch, "build", "step01")
    subprocess.run(tool + ["start", own], env=env, capture_output=True, check=True)
    subprocess.run(tool + ["step", "1", laid], env=env, capture_output=True, check=True)
    edits = {os.path.join(own, "server.c"): "/* mine */\n",
             os.path.join(laid, "server.c"): open(os.path.join(laid, "server.c")).read()
             + "/* my edit */\n"}
    for path, text in edits.items():
        with open(path, "w") as out:
            out.write(text)
    commands = [["start", own], ["step", "1", own], ["step", "2", laid], ["step", "1", laid],
                ["clean"]]
    for command in commands:
        result = subprocess.run(tool + command, env=env, capture_output=True, text=True)
        survived = all(os.path.exists(p) and open(p).read() == t for p, t in edits.items())
        tally.record(survived and (command == ["clean"] or result.returncode != 0),
                     f"'tutorial.py {' '.join(command)}' kept the edited files and refused")


def check_propagate(scratch, tally):
    """In a copy of the project: a change saved to an early step is carried
    to the last step by propagate; a change that a later step rewrites stops
    propagate at that step, naming it."""
    copy = os.path.join(scratch, "project")
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns(".git", "build", "node",
                                                                 "*.o", "server"))
    tool = [sys.executable, os.path.join(copy, "tutorial", "tools", "tutorial.py")]
    env = dict(os.environ, TUTORIAL_BUILD=os.path.join(copy, "tutorial", "build"))
    steps = series()
    # The first step that has notifier.c: its opening line lives on to the end.
    first = next(s for s in steps if "b/notifier.c" in s.patch())
    folder = os.path.join(copy, "tutorial", "build", f"step{first.number:02d}")
    subprocess.run(tool + ["step", first.name, folder], env=env, capture_output=True,
                   check=True)
    path = os.path.join(folder, "notifier.c")
    with open(path) as text:
        lines = text.read().split("\n")
    lines[0] += " (carried forward)"
    with open(path, "w") as out:
        out.write("\n".join(lines))
    saved = subprocess.run(tool + ["save", first.name], env=env, capture_output=True, text=True)
    carried = subprocess.run(tool + ["propagate", first.name], env=env, capture_output=True,
                             text=True)
    last = os.path.join(scratch, "propagated-last")
    subprocess.run(tool + ["step", str(len(steps)), last], env=env, capture_output=True)
    with open(os.path.join(last, "notifier.c")) as text:
        arrived = text.read().split("\n")[0].endswith(" (carried forward)")
    tally.record(saved.returncode == 0 and carried.returncode == 0 and arrived,
                 f"propagate carries a change to step {first.number} into the last step: "
                 f"{saved.stderr}{carried.stderr}")
    # A change to a line that the next step rewrites: a conflict, named.
    for later in steps[first.number:]:
        removed = [line[1:] for line in later.patch().splitlines()
                   if line.startswith("-") and not line.startswith("---") and line[1:].strip()]
        if removed:
            break
    before = steps[later.number - 2]
    folder = os.path.join(copy, "tutorial", "build", f"step{before.number:02d}")
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(tool + ["step", before.name, folder], env=env, capture_output=True,
                   check=True)
    for name in SOURCES:
        path = os.path.join(folder, name)
        if os.path.exists(path) and removed[0] in open(path).read():
            text = open(path).read().replace(removed[0], removed[0] + " /* mine */", 1)
            with open(path, "w") as out:
                out.write(text)
            break
    subprocess.run(tool + ["save", before.name], env=env, capture_output=True, text=True)
    stopped = subprocess.run(tool + ["propagate", before.name], env=env, capture_output=True,
                             text=True)
    tally.record(stopped.returncode != 0 and f"step {later.number} ({later.name})"
                 in stopped.stderr,
                 f"propagate stops at the conflicting step {later.number}, naming it: "
                 f"{stopped.stderr.strip()!r}")


def lay_every_step(scratch, tally):
    """Each step laid out from the series, as "make step" does, for the
    quoted blocks. Returns the folder of the last."""
    folder = None
    for step in series():
        folder = os.path.join(scratch, "steps", f"{step.number:02d}")
        lay_out_step(step, folder)
    return folder


def coursework_projects():
    """The coursework projects: each folder of coursework/ with a tests.py."""
    return sorted(os.path.basename(os.path.dirname(path))
                  for path in glob.glob(os.path.join(COURSEWORK, "*", "tests.py")))


def builds_on(project):
    """The project a coursework project starts from (its BUILDS_ON), or None."""
    with open(os.path.join(COURSEWORK, project, "tests.py")) as text:
        found = re.search(r"^BUILDS_ON\s*=\s*[\"']([\w-]+)[\"']", text.read(), re.M)
    return found.group(1) if found else None


def run_grader(grade_py, project, folder):
    """(exit status, last line) of grade.py PROJECT FOLDER; prints its output
    if it has no score line."""
    result = subprocess.run([sys.executable, grade_py, project, folder], capture_output=True,
                            text=True, timeout=1800)
    lines = result.stdout.strip().splitlines()
    last = lines[-1] if lines else ""
    if not last.startswith(f"{project}: "):
        print(result.stdout + result.stderr)
    return result.returncode, last


def check_coursework(tally):
    """On a copy of the top folder's server (what a student starts from, with
    the solution of BUILDS_ON applied first), each grader must fail as it is
    and pass with its reference solution applied. Returns the projects."""
    grade_py = os.path.join(COURSEWORK, "grade.py")
    projects = coursework_projects()
    for project in projects:
        solution = os.path.join(COURSEWORK, "solutions", f"{project}.patch")
        if not tally.record(os.path.exists(solution), f"coursework {project} has no "
                            f"solutions/{project}.patch"):
            continue
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as folder:
            for name in SOURCES:
                shutil.copy(os.path.join(PROJECT, name), folder)
            base = builds_on(project)
            if base:
                with open(os.path.join(COURSEWORK, "solutions", f"{base}.patch")) as text:
                    apply_patch(text.read(), folder, f"coursework {base}'s solution")
            status, before = run_grader(grade_py, project, folder)
            tally.record(status != 0 and before.startswith(f"{project}: "),
                         f"coursework {project}: the grader passes its starting point")
            try:
                with open(solution) as text:
                    apply_patch(text.read(), folder, f"coursework {project}'s solution")
            except SystemExit as why:  # say so, and go on to the next project
                tally.record(False, str(why))
                continue
            status, after = run_grader(grade_py, project, folder)
        tally.record(status == 0, f"coursework {project}: the grader fails the reference "
                     f"solution")
        print(f"coursework {project}: starting point: {before}; with the solution: {after} "
              f"({time.monotonic() - start:.0f} s)")
    check_handout(tally)
    return projects


def check_handout(tally):
    """A handout holds no solution and no teacher's notes; a hand-in packed
    there (new files and the student's notes included) grades the same there
    and in the repository; an unchanged server's hand-in gets its score too."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = os.path.join(scratch, "handout")
        subprocess.run([sys.executable, os.path.join(COURSEWORK, "handout.py"), folder],
                       check=True, capture_output=True)
        leaked = [os.path.relpath(os.path.join(where, name), folder)
                  for where, dirs, files in os.walk(folder) for name in dirs + files
                  if name.endswith(".patch") or "solution" in name
                  or name in ("TEACHING.md", "handout.py", "handout.mk")]
        tally.record(not leaked, f"the handout holds teachers' files: {leaked}")
        make = ["make", "-s", "--no-print-directory", "-C", "tutorial"]

        def run(command, where):
            return subprocess.run(command, cwd=where, capture_output=True, text=True,
                                  env=dict(os.environ, PWD=where))

        empty = run(make + ["handin", "PROJECT=subprotocol"], folder)
        graded = run(make + ["grade", "PROJECT=subprotocol", "HANDIN=handin-subprotocol.patch"],
                     folder)
        tally.record(empty.returncode == 0 and "subprotocol: 2 of 7" in graded.stdout,
                     f"an unchanged server's hand-in packs and grades to the starting score:\n"
                     f"{empty.stdout}{empty.stderr}{graded.stdout}{graded.stderr}")
        # event-loop's solution adds event_loop.c and event_loop.h.
        project = "event-loop"
        with open(os.path.join(COURSEWORK, "solutions", f"{project}.patch")) as text:
            apply_patch(text.read(), folder, f"coursework {project}'s solution")
        with open(os.path.join(folder, "NOTES.md"), "w") as notes:
            notes.write("Answers to what is marked by hand.\n")
        handin = run(make + ["handin", f"PROJECT={project}"], folder)
        tally.record(handin.returncode == 0, f"make handin in a handout: {handin.stderr}")
        packed = os.path.join(folder, f"handin-{project}.patch")
        with open(packed) as text:
            carried = re.findall(r"^\+\+\+ b/(\S+)", text.read(), re.M)
        tally.record({"event_loop.c", "event_loop.h", "NOTES.md"} <= set(carried),
                     f"a hand-in carries new files and NOTES.md: it has {carried}")
        for where, name in [(folder, "the handout"), (os.path.dirname(TUTORIAL), "the repository")]:
            graded = run(make + ["grade", f"PROJECT={project}", f"HANDIN={packed}"], where)
            tally.record(graded.returncode == 0, f"{name} grades a {project} hand-in:\n"
                         f"{graded.stdout}{graded.stderr}")
            last = graded.stdout.strip().splitlines()[-1:]
            print(f"coursework handout: the {project} hand-in graded in {name}: "
                  f"{last[0] if last else '?'}")


def check_coursework_only():
    tally = Tally()
    projects = check_coursework(tally)
    print(f"{len(projects)} coursework graders checked")
    print(f"total: {tally.passed} passed, {tally.failed} failed")
    return 0 if tally.failed == 0 else 1


def check():
    tally = Tally()
    rendered = rendered_chapters()
    stale = render(check_only=True)
    tally.record(not stale, f"chapters out of date (make -C tutorial render): {stale}")
    check_sizes(tally)
    check_words(rendered, tally)
    with tempfile.TemporaryDirectory() as scratch:
        typed, tests = type_along(rendered, scratch, tally)
        last = lay_every_step(scratch, tally)
        tally.record(read_sources(typed) == read_sources(last),
                     "typing along the chapters gives the last step exactly")
        blocks = check_quotes(rendered, scratch, tally)
        check_last_step(last, tally)
        build(last, tally, "the last step")
        run_project_tests(last, tally)
        check_planted_bug(scratch, tally)
        check_folders_are_kept(scratch, tally)
        check_propagate(scratch, tally)
        projects = len(check_coursework(tally))
    print(f"{len(series())} steps, {len(rendered)} chapters, {tests} step tests, {blocks} "
          f"quoted blocks, {projects} coursework graders checked")
    print(f"total: {tally.passed} passed, {tally.failed} failed")
    return 0 if tally.failed == 0 else 1


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "list" and len(argv) == 2:
        list_steps()
    elif command == "step" and len(argv) in (3, 4):
        step = find_step(argv[2])
        folder = argv[3] if len(argv) == 4 else step_folder(step)
        lay_out_step(step, folder)
        print(f"step {step.number} ({step.name}) is in {folder}: cd there, then make && "
              f"make test")
    elif command == "diff" and len(argv) == 3:
        print(find_step(argv[2]).patch(), end="")
    elif command == "start" and len(argv) == 3:
        start(argv[2])
    elif command == "save" and len(argv) == 3:
        save(find_step(argv[2]))
    elif command == "propagate" and len(argv) == 3:
        propagate(find_step(argv[2]))
    elif command == "render" and len(argv) in (2, 3):
        stale = render(check_only=argv[2:] == ["--check"])
        print(f"{len(stale)} chapter(s) {'out of date' if argv[2:] else 'written'}"
              + (f": {', '.join(stale)}" if stale else ""))
        return 1 if stale and argv[2:] else 0
    elif command == "clean" and len(argv) == 2:
        clean()
    elif command == "check" and len(argv) == 2:
        return check()
    elif argv[1:] == ["check", "--coursework-only"]:
        return check_coursework_only()
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
