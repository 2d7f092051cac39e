"""skrobust: attack, evaluate and monitor machine-learning models from the command line."""

import argparse
import sys

from ._model import MODEL_HELP, MODULE_KWARGS_HELP

THREADS_HELP = ("torch CPU threads (default 1: on a machine whose cores are busy with "
                "other work, more threads than free cores slow training down many "
                "times over; 0 keeps torch's default of one per core)")


def _setup(args):
    """Process-wide settings of a command: torch's thread count, a headless backend."""
    import matplotlib
    import torch

    if args.threads < 0:
        raise SystemExit(f"skrobust {args.command}: --threads must be >= 0 "
                         f"(got {args.threads}); 0 keeps torch's default.")
    if args.threads:
        torch.set_num_threads(args.threads)
    matplotlib.use("Agg")  # the commands only write figures to files


def _bound(text):
    """A --clip-min/--clip-max value: a number, 'none' or 'data'."""
    if text.lower() in ("none", "data"):
        return None if text.lower() == "none" else "data"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a bound; give a number, 'none' (no bound) or 'data' "
            "(the per-feature range of the evaluated samples)") from None


def _run_demo(args):
    from .._demo import run_demo

    _setup(args)
    run_demo(epochs=args.epochs, eps=args.eps, data_home=args.data_home,
             n_train=args.n_train, n_test=args.n_test, output=args.output,
             save_model=args.save_model, save_detector=args.save_detector,
             save_batches=args.save_batches, device=args.device, random_state=args.seed,
             verbose=0 if args.quiet else 1)
    return 0


def _mebibytes(text):
    """--max-batch-mib as a positive number of bytes."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of MiB")
    return max(1, int(value * 2**20))


def _run_monitor(args):
    from ._monitor import monitor_command

    _setup(args)
    return monitor_command(args.detector, args.batch_dir, args.output_dir,
                           model=args.model, module_kwargs=args.module_kwargs,
                           weights=args.weights, top_k=args.top_k, rescan=args.rescan,
                           max_batch_bytes=args.max_batch_mib,
                           verbose=0 if args.quiet else 1)


def _run_report(args):
    from ._report import report_command

    _setup(args)
    return report_command(args.weights, args.model, module_kwargs=args.module_kwargs,
                          data=args.data, data_home=args.data_home,
                          n=args.n, eps=args.eps, norm=args.norm, eps_values=args.eps_values,
                          n_iter=args.n_iter, n_queries=args.n_queries,
                          clip_min=args.clip_min, clip_max=args.clip_max,
                          output_dir=args.output_dir, device=args.device,
                          random_state=args.seed, verbose=0 if args.quiet else 1)


def _add_model_options(command, *, required, purpose="the network"):
    """``--model`` (alias ``--module``) and ``--module-kwargs``: the same in every command
    that loads a network (see :func:`skrobust.cli._model.load_model`)."""
    command.add_argument("--model", "--module", dest="model", required=required,
                         default=None, metavar="MODEL", help=MODEL_HELP.format(purpose))
    command.add_argument("--module-kwargs", default="{}", metavar="JSON",
                         help=MODULE_KWARGS_HELP)


def _add_run_options(command, func, *, quiet, device_and_seed=True):
    """The options each command ends with, and the function that runs it.

    ``--device`` and ``--seed`` (where the command trains or attacks), ``--threads``
    and ``--quiet`` (whose help is ``quiet``).
    """
    if device_and_seed:
        command.add_argument("--device", default="cpu", help="torch device (cpu)")
    command.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    if device_and_seed:
        command.add_argument("--seed", type=int, default=0, help="random seed (0)")
    command.add_argument("--quiet", action="store_true", help=quiet)
    command.set_defaults(func=func)


def build_parser():
    parser = argparse.ArgumentParser(prog="skrobust", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train LeNet5 on MNIST and break it with FGSM",
        description="Train LeNet5 on MNIST (the full set when a data root holds it, "
                    "else the embedded 10k test set split 8k/2k), attack the test set "
                    "with FGSM, print MindArmour's table and save a figure.")
    demo.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    demo.add_argument("--eps", type=float, default=0.3, help="FGSM budget (0.3)")
    demo.add_argument("--data-home", default=None,
                      help="data root holding mnist/ (default: $SKROBUST_DATA)")
    demo.add_argument("--n-train", type=int, default=None, help="use only the first N training images")
    demo.add_argument("--n-test", type=int, default=None, help="attack only the first N test images")
    demo.add_argument("--output", default="skrobust_demo.png", help="figure path ('' for none)")
    demo.add_argument("--save-model", default=None, metavar="PATH",
                      help="save the trained LeNet5's state_dict there (torch.save), for "
                           "skrobust report PATH --model lenet5 and skrobust monitor")
    demo.add_argument("--save-detector", default=None, metavar="PATH",
                      help="save an MMD drift detector on the net's relu3 layer, fitted on "
                           "clean test images, for skrobust monitor")
    demo.add_argument("--save-batches", default=None, metavar="DIR",
                      help="write two batches for skrobust monitor there: clean.npy and "
                           "fgsm.npy (200 test images each, clean and attacked)")
    _add_run_options(demo, _run_demo,
                     quiet="no progress output (the results are still printed)")
    monitor = commands.add_parser(
        "monitor", help="test each new batch of a folder against a saved MMD detector",
        description="Run a detector saved with skrobust.detection.save_detector on every "
                    "new .npy/.npz batch of a folder; write a JSON report per batch, "
                    "append to history.jsonl and draw detection_rate.png. A batch that cannot "
                    "be read or tested is recorded in the history with the reason (once: "
                    "later runs skip it) and the run goes on; the exit status is 1 when "
                    "any failed, 2 when the run cannot start.")
    monitor.add_argument("detector", help="saved detector (.npz)")
    monitor.add_argument("batch_dir", help="folder of incoming batches (.npy/.npz)")
    monitor.add_argument("--output-dir", default="monitor",
                         help="reports, history and figure (monitor)")
    _add_model_options(monitor, required=False, purpose="the network of a layer detector")
    monitor.add_argument("--weights", default=None,
                         help="state_dict of the network (torch.save), loaded with "
                              "weights_only=True")
    monitor.add_argument("--top-k", type=int, default=100,
                         help="suspicious indices per batch (100)")
    monitor.add_argument("--max-batch-mib", type=_mebibytes, default=2**30, metavar="MIB",
                         help="largest batch read, in MiB of data as its header declares "
                              "it (1024); larger files are recorded as errors without "
                              "being loaded")
    monitor.add_argument("--rescan", action="store_true",
                         help="re-score batches already in the history")
    _add_run_options(monitor, _run_monitor, quiet="no progress output", device_and_seed=False)
    report = commands.add_parser(
        "report", help="evaluate a saved model and write an HTML + JSON robustness report",
        description="Load a state_dict (torch.load with weights_only=True) into a "
                    "network (a skrobust.models name or package.module:Class, built "
                    "as for skrobust monitor), run the default worst-case ensemble "
                    "(APGD-CE, APGD-T, FAB-T, Square, FGSM) and a security curve with "
                    "sanity checks, and write report.html (self-contained) and report.json. The exit status is 1 "
                    "when a sanity check failed (the report is written all the same).")
    report.add_argument("weights", help="state_dict file saved with torch.save")
    _add_model_options(report, required=True)
    report.add_argument("--data", default="mnist",
                        help="'mnist' (test split) or a .npz file with arrays X and y (mnist)")
    report.add_argument("--data-home", default=None,
                        help="data root holding mnist/ (default: $SKROBUST_DATA)")
    report.add_argument("--n", type=int, default=500, help="evaluate the first N samples (500)")
    report.add_argument("--eps", type=float, default=0.3, help="budget of the attack table (0.3)")
    report.add_argument("--norm", default="inf", choices=["inf", "2"], help="norm (inf)")
    report.add_argument("--eps-values", default=None,
                        help="budgets of the curve, comma-separated (6 from 0 to --eps)")
    report.add_argument("--n-iter", type=int, default=100, help="APGD iterations (100)")
    report.add_argument("--n-queries", type=int, default=1000,
                        help="Square Attack queries, 0 for none (1000)")
    report.add_argument("--clip-min", type=_bound, default=0.0,
                        help="lower bound of the inputs: a number, 'none' or 'data' (the "
                             "per-feature minimum of the samples); 0 for images in [0, 1]")
    report.add_argument("--clip-max", type=_bound, default=1.0,
                        help="upper bound of the inputs: a number, 'none' or 'data' (1); "
                             "tabular data: --clip-min data --clip-max data")
    report.add_argument("--output-dir", default="report", help="output folder (report)")
    _add_run_options(report, _run_report, quiet="no progress or summary (failed sanity checks "
                                            "still go to stderr)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
