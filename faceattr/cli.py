"""The `faceattr` command line. TensorFlow is imported only by the commands that need it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from faceattr.data import resolve_data_dir, scan, split_frame
from faceattr.defaults import (AGE_HEADS, ARCH_NAMES, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_MIN_FACE_SIZE,
                               DEFAULT_SEED, GROUP_BALANCES, LOSS_BALANCES, check_min_confidence, check_min_face_size)
from faceattr.errors import FaceattrError, PhotoError, SettingsError
from faceattr.runs import Manifest, RunFolder
from faceattr.sample import DEFAULT_PROFILE, PROFILES, SAMPLE_SEED, SAMPLE_SIZE, ensure_sample

BUG_LINE = ("faceattr {command}: this is a bug in faceattr, not in your data or settings; please report it "
            "with the traceback above.")


class UsageError(SettingsError):
    """A bad command-line value, reported as one line."""


def summarise_scan(data: str) -> dict:
    """Scan DATA and return the counts that `faceattr scan` reports."""
    result = scan(data, progress=sys.stderr.isatty())
    frame, copies = result.frame, result.duplicates()
    return {
        "data": str(data),
        "valid": len(frame),
        "skipped": len(result.skipped),
        "skipped_by_reason": result.skipped_by_reason(),
        "duplicates": {"images_with_copies": int(copies["content"].nunique()),
                       "extra_copies": int(len(copies) - copies["content"].nunique())},
        "gender": {str(k): int(v) for k, v in frame["gender_name"].value_counts().items()},
        "race": {str(k): int(v) for k, v in frame["race_name"].value_counts().items()},
        "age": {"min": int(frame["age"].min()), "median": float(frame["age"].median()),
                "max": int(frame["age"].max())},
        "split": {str(k): int(v) for k, v in split_frame(frame)["split"].value_counts().items()},
    }


def print_summary(summary: dict) -> None:
    """Print a scan summary as a readable report."""
    print(f"{summary['data']}: {summary['valid']} valid images, {summary['skipped']} skipped")
    for reason, count in summary["skipped_by_reason"].items():
        print(f"  skipped  {count:6d}  {reason}")
    copies = summary["duplicates"]
    if copies["extra_copies"]:
        print(f"duplicates: {copies['images_with_copies']} images have {copies['extra_copies']} byte-identical "
              "extra copies; the split keeps every copy in the same part")
    for field in ("gender", "race", "split"):
        print(f"{field}: " + ", ".join(f"{name} {count}" for name, count in summary[field].items()))
    age = summary["age"]
    print(f"age: min {age['min']}, median {age['median']:g}, max {age['max']}")


def command_sample(args: argparse.Namespace) -> int:
    """Write the synthetic sample."""
    out = Path(args.out_dir)
    if args.n < 10:
        raise UsageError(f"--n {args.n} is too small; use at least 10 images.")
    ensure_sample(out, args.n, args.seed, args.profile)  # rebuilds a stale sample whole: no leftover files
    print(f"wrote {args.n} synthetic faces, profile {args.profile} (+ planted broken files) to {out}")
    return 0


def command_scan(args: argparse.Namespace) -> int:
    """Scan a data set and report counts."""
    summary = summarise_scan(args.data)
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
    return 0


def command_cache(args: argparse.Namespace) -> int:
    """List the kit's cache (tarball extractions, scan results, decoded images), or clear it."""
    from faceattr.cache import cache_entries, clear_cache, usable_cache_dir

    cache_dir = usable_cache_dir()  # the folder the kit really uses: the private fallback when it had to choose one
    if args.clear:
        freed, busy = clear_cache(cache_dir)
        print(f"freed {freed / 1e6:.1f} MB in {cache_dir}"
              + (f"; kept {len(busy)} entries another process is using" if busy else ""))
        return 0
    entries = cache_entries(cache_dir)
    for entry in entries:
        print(f"{entry['kind']:10s} {entry['bytes'] / 1e6:9.1f} MB  {entry['path']}"
              + (f"  ({'from ' if entry['kind'] == 'extraction' else ''}{entry['source']})" if entry["source"] else ""))
    print(f"{len(entries)} entries, {sum(e['bytes'] for e in entries) / 1e6:.1f} MB in {cache_dir}; "
          "`faceattr cache --clear` deletes them (they are rebuilt when needed)")
    return 0


def command_run(args: argparse.Namespace) -> int:
    """The main job: run the whole notebook sequence with papermill into RUN_DIR."""
    from faceattr.notebook import display_path, run_sequence

    overrides = dict(args.parameter or [])
    started = time.perf_counter()
    run_sequence(args.out, args.data, overrides, path_name=args.path)
    print(f"whole sequence: {time.perf_counter() - started:.0f} s")
    run = RunFolder(args.out)
    if run.metrics.exists():
        print(format_metrics(run.read_metrics()))
    print(f"results in {display_path(run.root)}/: notebooks/ (executed), {run.figures.name}/ (PNG, incl. "
          f"prediction_grid.png), {run.model.name}, {run.metrics.name}")
    return 0


def format_metrics(metrics: dict) -> str:
    """Headline test metrics as readable lines, flagged when the data is synthetic."""
    test = metrics["test"]
    lines = [f"test split: {test['n']} images" + (" (SYNTHETIC sample: says nothing about real faces)"
                                                   if metrics["synthetic"] else "")]
    for head in ("gender", "race"):
        low, high = test[f"{head}_accuracy_ci95"]
        lines.append(f"  {head:6s} accuracy {test[f'{head}_accuracy']:.3f} (95% CI {low:.3f}-{high:.3f}), "
                     f"balanced {test[f'{head}_balanced_accuracy']:.3f}, macro-F1 {test[f'{head}_macro_f1']:.3f}")
    lines.append(f"  age    MAE {test['age_mae']:.2f} years, age-band accuracy {test['age_band_accuracy']:.3f}")
    return "\n".join(lines)


def command_train(args: argparse.Namespace) -> int:
    """Train one architecture and evaluate it on the full test split."""
    from faceattr.defaults import check_seed, parse_loss_weights
    from faceattr.recipe import Recipe

    # every setting is checked before TensorFlow is imported, once: a Recipe is checked when it is made
    loss_weights = parse_loss_weights(args.loss_weights) if args.loss_weights else None
    recipe = Recipe.named(args.arch, image_size=args.image_size, age_head=args.age_head,
                          loss_balance=args.loss_balance, loss_weights=loss_weights,
                          learning_rate=args.learning_rate, batch_size=args.batch_size, balance=args.balance,
                          augment=args.augment, num_epochs=args.epochs)
    check_seed(args.seed)
    data = resolve_data_dir(args.data)
    RunFolder(args.out).refuse_inside(data)  # before TensorFlow is imported, too
    from faceattr.data import data_in_use
    from faceattr.train import train_run

    with data_in_use(data):  # from the scan on: `faceattr cache --clear` leaves the data's extraction alone
        metrics = train_run(data, args.out, recipe, seed=args.seed, overwrite=args.overwrite,
                            report=lambda note: print(f"faceattr train: note: {note}", file=sys.stderr))
    print(format_metrics(metrics))
    run = RunFolder(args.out)
    written = (run.model, run.history, run.metrics, run.config, run.predictions, run.model_card)
    print(f"results in {run.root}/ ({', '.join(path.name for path in written)})")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained run on the full test split."""
    from faceattr.evaluate import evaluate_run

    run = RunFolder(args.run_dir)
    run.check_idle()
    data = str(resolve_data_dir(args.data)) if args.data else None
    print(format_metrics(evaluate_run(args.run_dir, data)))
    print(f"wrote {run.metrics}, {run.predictions.name} and {run.model_card.name}")
    return 0


def command_card(args: argparse.Namespace) -> int:
    """Print the run's model card, written afresh from its config.json and metrics.json."""
    run = RunFolder(args.run_dir)
    config, metrics = run.read_config(), run.read_metrics()
    run.check_idle()
    print(run.write_model_card(config, metrics).read_text(), end="")
    return 0


def same_file(path: Path, other: str | Path) -> bool:
    """True when `path` and `other` name one file (the same path, a link to it, or a hard link)."""
    if path.resolve() == Path(other).resolve():
        return True
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist
        return False


def output_path(folder: str, name: str, photo: str, photos: list[str], written: dict[Path, Path]) -> Path:
    """FOLDER/NAME, where `predict --annotate` or `explain --out` writes for `photo`; a PhotoError when that is one of
    the input photos, or another photo of this call wrote it (`written`: each output so far, and its photo). A file
    there that the kit did not write is refused when written (see `faceattr.runs.Manifest.write`)."""
    target = Path(folder) / name
    if any(same_file(target, other) for other in photos):
        raise PhotoError(f"{target} is one of the input photos, and the kit never writes over an input: choose "
                         "another output folder.")
    if target.resolve() in written and not same_file(written[target.resolve()], photo):
        raise PhotoError(f"{target} was already written for {written[target.resolve()]}, another photo of the same "
                         "name; rename one of them, or write their outputs to separate folders.")
    return target


def faces_in_photos(command: str, model, args: argparse.Namespace) -> Iterator[tuple[str, object, list[dict]]]:
    """Each readable photo of `args.photos` with the faces found and predicted in it; an unreadable photo, or one
    with no face, gets one line on stderr (the first is skipped, the second still yielded)."""
    from faceattr.detect import PhotoError, load_photo, predict_faces

    for photo_path in args.photos:
        try:
            photo = load_photo(photo_path)
        except PhotoError as error:
            print(f"faceattr {command}: error: {error}", file=sys.stderr)
            continue
        faces = predict_faces(model, photo, args.min_face_size, args.min_confidence)
        if not faces:
            print(f"faceattr {command}: {photo_path}: no face found", file=sys.stderr)
        yield photo_path, photo, faces


def check_detection_arguments(args: argparse.Namespace) -> None:
    """Refuse a --min-face-size or --min-confidence outside its range before the model loads."""
    check_min_face_size(args.min_face_size)
    if args.min_confidence is not None:
        check_min_confidence(args.min_confidence)


def command_predict(args: argparse.Namespace) -> int:
    """Detect every face in each photo and predict age, gender and race; a bad photo, or one whose annotated copy
    cannot be written, is reported and the rest go on. Exit status 1 only when no photo was done."""
    check_detection_arguments(args)
    from faceattr.detect import SYNTHETIC_NOTE, annotate, json_record

    run = RunFolder(args.model)
    model, provenance = run.load_model(), run.provenance()
    if provenance["synthetic"]:
        print(f"faceattr predict: note: {SYNTHETIC_NOTE}.", file=sys.stderr)
    done, written = 0, {}
    for photo_path, photo, faces in faces_in_photos("predict", model, args):
        if args.json:
            print(json.dumps(json_record(photo_path, faces, provenance)))
        else:
            for face in faces:
                quality = face["quality"]
                print(f"{photo_path}: box {face['box']} age {face['age']:.0f}, {face['gender']} "
                      f"(p={face['gender_probs'][face['gender']]:.2f}), {face['race']} "
                      f"(p={face['race_probs'][face['race']]:.2f}); face {quality['face_pixels']} px, "
                      f"detector {quality['confidence']:.2f}"
                      + (", cut by the border" if quality["cut_by_border"] else ""))
        if args.annotate:
            target = Path(args.annotate)  # named in the OSError line, should output_path itself fail
            try:
                target = output_path(args.annotate, f"{Path(photo_path).stem}_faces.jpg", photo_path, args.photos,
                                     written)
                Manifest(target.parent).write(target, lambda temporary: annotate(
                    photo, faces, provenance["synthetic"]).save(temporary, "JPEG", quality=92))
                written[target.resolve()] = Path(photo_path)
            except FaceattrError as error:  # an input photo, a user's file, or a full disk: this photo only
                print(f"faceattr predict: error: {error}", file=sys.stderr)
                continue
            except OSError as error:
                print(f"faceattr predict: error: cannot write {target} ({error.strerror or error}); "
                      "choose a writable --annotate folder.", file=sys.stderr)
                continue
        done += 1
    return 0 if done else 1


def command_explain(args: argparse.Namespace) -> int:
    """Write one Grad-CAM figure per face that `predict` finds (every head side by side); a bad photo is reported
    and the rest go on. Exit status 1 only when no photo was done."""
    check_detection_arguments(args)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from faceattr.detect import SYNTHETIC_NOTE, crops_to_batch
    from faceattr.explain import HEADS, check_layer, grad_cam, last_conv_layer, upsample
    from faceattr.plots import heatmap_row

    run = RunFolder(args.model)
    model, provenance = run.load_model(), run.provenance()
    layer = check_layer(model, args.layer) if args.layer else last_conv_layer(model)
    done, outputs = 0, {}
    for photo_path, _, faces in faces_in_photos("explain", model, args):
        written = []
        for index, face in enumerate(faces, start=1):
            batch = crops_to_batch([face["crop"]], model.input_shape[1])
            maps = {head: upsample(grad_cam(model, batch, head, layer)[0], batch.shape[1]) for head in HEADS}
            titles = {"age": f"age {face['age']:.0f}", "gender": face["gender"], "race": face["race"]}
            figure = heatmap_row(batch[0], maps, titles, SYNTHETIC_NOTE if provenance["synthetic"] else "")
            target = Path(args.out)  # named in the OSError line, should output_path itself fail
            try:
                target = output_path(args.out, f"{Path(photo_path).stem}_face{index}_gradcam.png", photo_path,
                                     args.photos, outputs)
                Manifest(target.parent).write(target, lambda temporary: figure.savefig(temporary, format="png",
                                                                                       dpi=120))
                outputs[target.resolve()] = Path(photo_path)
            except FaceattrError as error:  # an input photo, a user's file, or a full disk: this photo only
                print(f"faceattr explain: error: {error}", file=sys.stderr)
                break
            except OSError as error:
                print(f"faceattr explain: error: cannot write {target} ({error.strerror or error}); "
                      "choose a writable --out folder.", file=sys.stderr)
                break
            finally:
                plt.close(figure)
            written.append(target)
        else:
            done += 1
            for target in written:
                print(target)
    return 0 if done else 1


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every subcommand."""
    parser = argparse.ArgumentParser(prog="faceattr", description="UTKFace multi-task teaching kit.")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="write the synthetic sample data set")
    sample.add_argument("out_dir")
    sample.add_argument("--n", type=int, default=SAMPLE_SIZE,
                        help=f"number of valid faces (default {SAMPLE_SIZE})")
    sample.add_argument("--seed", type=int, default=SAMPLE_SEED)
    sample.add_argument("--profile", default=DEFAULT_PROFILE,
                        help="how the labels and their cues are drawn: "
                             + "; ".join(f"{name}: {profile.summary}" for name, profile in PROFILES.items())
                             + f" (default {DEFAULT_PROFILE})")
    sample.set_defaults(handler=command_sample)

    scan_parser = commands.add_parser("scan", help="scan a UTKFace folder or .tar.gz and report counts")
    scan_parser.add_argument("data")
    scan_parser.add_argument("--json", action="store_true", help="print one JSON object")
    scan_parser.set_defaults(handler=command_scan)

    cache = commands.add_parser("cache", help="list the kit's cache (tarball extractions, scans, decoded images), or clear it")
    cache.add_argument("--list", action="store_true", help="list the entries and their sizes (the default)")
    cache.add_argument("--clear", action="store_true", help="delete every entry no process is using")
    cache.set_defaults(handler=command_cache)

    train = commands.add_parser("train", help="train a model and evaluate it on the full test split")
    train.add_argument("--data", default="auto", help='a folder, a .tar.gz, "sample" or "auto" (default)')
    train.add_argument("--out", required=True, help="run folder to create")
    train.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    train.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    train.add_argument("--image-size", type=int, default=None, help="default: the architecture's own")
    train.add_argument("--learning-rate", type=float, default=None, help="Adam's; default: the architecture's own")
    train.add_argument("--arch", default="default", help=", ".join(ARCH_NAMES))
    train.add_argument("--age-head", metavar="HEAD", default=None,
                       help=f"{', '.join(AGE_HEADS)} (default: the architecture's own)")
    train.add_argument("--loss-balance", metavar="SCHEME", default=None,
                       help=f"how the three head losses are weighted: {', '.join(LOSS_BALANCES)} "
                            "(default: the architecture's own)")
    train.add_argument("--loss-weights", metavar="W", default=None,
                       help='fixed weights for --loss-balance fixed, e.g. "age=2,gender=1,race=1.5"')
    train.add_argument("--balance", default="none",
                       help=f"mitigation across race x gender groups: {', '.join(GROUP_BALANCES)} (default none): "
                            "'sample' draws every batch evenly from the groups, 'weight' weights each image's loss "
                            "by the inverse of its group's share")
    train.add_argument("--seed", type=int, default=DEFAULT_SEED)
    train.add_argument("--augment", action="store_true", help="flip/brightness/contrast augmentation")
    train.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    train.set_defaults(handler=command_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a trained run on the full test split")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--data", default=None, help="default: the data the run was trained on")
    evaluate.set_defaults(handler=command_evaluate)

    explain = commands.add_parser("explain", help="Grad-CAM heat maps of every head for each face in photos")
    explain.add_argument("--model", required=True, metavar="RUN_DIR", help="a run folder holding model.keras")
    explain.add_argument("photos", nargs="+", metavar="PHOTO")
    explain.add_argument("--out", required=True, metavar="OUT_DIR", help="write one PNG per face here")
    explain.add_argument("--layer", default=None, help="the convolution to explain (default: the last one)")
    explain.add_argument("--min-face-size", type=int, default=DEFAULT_MIN_FACE_SIZE,
                         help="smallest face to report, in the photo's pixels (default %(default)s)")
    explain.add_argument("--min-confidence", type=float, default=None,
                         help="detection confidence floor, 0..1 (default: the measured one, see docs/detection.md)")
    explain.set_defaults(handler=command_explain)

    card = commands.add_parser("card", help="print a run's model card (what the model is for, where it fails)")
    card.add_argument("run_dir")
    card.set_defaults(handler=command_card)

    predict = commands.add_parser("predict", help="detect faces in photos and predict age, gender and race")
    predict.add_argument("--model", required=True, metavar="RUN_DIR", help="a run folder holding model.keras")
    predict.add_argument("photos", nargs="+", metavar="PHOTO")
    predict.add_argument("--json", action="store_true", help="one JSON object per photo")
    predict.add_argument("--annotate", metavar="OUT_DIR", help="write each photo with boxes and labels here")
    predict.add_argument("--min-face-size", type=int, default=DEFAULT_MIN_FACE_SIZE,
                         help="smallest face to report, in the photo's pixels (default %(default)s)")
    predict.add_argument("--min-confidence", type=float, default=None,
                         help="detection confidence floor, 0..1 (default: the measured one, see docs/detection.md)")
    predict.set_defaults(handler=command_predict)

    run = commands.add_parser("run", help="run the whole notebook sequence with papermill (what `make run` does)")
    run.add_argument("--data", default="auto", help='a folder, a .tar.gz, "sample" or "auto" (default)')
    run.add_argument("--out", default="runs/latest", help="run folder (default runs/latest)")
    run.add_argument("--path", default="all", help="all (default) or core: only the cells not tagged 'extension', "
                     "the 90-minute class (notebooks/README.md)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="override a notebook parameter, e.g. -p num_epochs 20 (repeatable)")
    run.set_defaults(handler=command_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI: an expected failure (`FaceattrError`) is one line and exit status 2; anything else is a bug
    and keeps its traceback (exit 1)."""
    args = build_parser().parse_args(argv)
    try:
        status = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows up here, not in the interpreter's exit
        return status
    except FaceattrError as error:
        print(f"faceattr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"faceattr {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `faceattr scan DATA | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except Exception:
        traceback.print_exc()
        print(BUG_LINE.format(command=args.command), file=sys.stderr)
        return 1

if __name__ == "__main__":
    sys.exit(main())
