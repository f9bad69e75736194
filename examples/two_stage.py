#!/usr/bin/python3
"""The ICPNS two-stage experiment, end to end against a real icpnsd.

Stage 1 trains BPR-MF / LightGCN with uniform negatives (RNS) from the
daemon. Stage 2 uploads the stage-1 user embeddings (LightGCN: the final
propagated ones) to POST /admin/cluster (k-means, K communities) and
fine-tunes from the stage-1 model for the same budget with each sampler:
ICPNS, PNS, continued RNS, and trainer-side hard negatives (the best of m
uniform candidates by model score), all drawn from the daemon. Results
(mean +- std over seeds of Recall@10, NDCG@10, MRR@10 on the test split,
models selected by validation NDCG@10) go to docs/results.md.

    examples/two_stage.py                      # MovieLens-100K from ../shared/data
    examples/two_stage.py --quick              # a short smoke run
    examples/two_stage.py --data DIR_OR_FILE   # u.data, RecBole .inter, or train.txt/test.txt

Needs Debian's python3-torch and python3-numpy, and a built icpnsd.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from icpns_experiment import data as D  # noqa: E402
from icpns_experiment import metrics as M  # noqa: E402

SAMPLERS = {"icpns": "ICPNS", "pns": "PNS", "rns": "RNS", "hns": "HNS"}
MODELS = {"bpr": "BPR-MF", "lightgcn": "LightGCN"}


class Progress:
    """One status line, rewritten in place on a terminal."""

    def __init__(self, quiet=False):
        self.tty = sys.stderr.isatty()
        self.quiet = quiet

    def __call__(self, msg, final=False):
        if self.quiet:
            return
        if self.tty and not final:
            sys.stderr.write("\r\033[K" + msg)
        else:
            sys.stderr.write(("\r\033[K" if self.tty else "") + msg + "\n")
        sys.stderr.flush()


class Daemon:
    """icpnsd on a free loopback port, serving the training split."""

    def __init__(self, binary, ds, alpha, workdir, log):
        self.tables = os.path.join(workdir, "tables")
        os.makedirs(self.tables, exist_ok=True)
        with open(os.path.join(self.tables, "interactions.tsv"), "w") as f:
            f.write("# user\titem (training split only: the positives excluded from negatives)\n")
            for u, i in ds.train:
                f.write("%d\t%d\n" % (ds.user_ids[u], ds.item_ids[i]))
        with open(os.path.join(self.tables, "communities.tsv"), "w") as f:
            f.write("# one community until stage 2 clusters the users\n")
            for u in ds.user_ids:
                f.write("%d\t0\n" % u)
        with open(os.path.join(self.tables, "tables.json"), "w") as f:
            json.dump({"alpha": alpha}, f)
        self.token = "experiment-" + os.urandom(12).hex()
        tok = os.path.join(workdir, "token")
        with open(tok, "w") as f:
            f.write(self.token)
        os.chmod(tok, 0o600)
        self.log = open(log, "w")
        self.proc = subprocess.Popen([binary, "--tables", self.tables, "--listen", "127.0.0.1:0",
                                      "--admin-token-file", tok, "--threads", "2"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.wait()
            raise SystemExit("icpnsd did not start; see %s" % log)
        self.url = "http://" + line.split()[-1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def load_data(args):
    """The dataset under the protocol, and the evaluation lists: the relevant
    items of each user per split, and the items masked when ranking (the
    training positives; for the test split also the validation ones)."""
    ds = D.load(args.data, min_rating=args.min_rating, core=args.core, seed=args.split_seed)
    truth = {"valid": M.user_lists(ds.valid, ds.n_users), "test": M.user_lists(ds.test, ds.n_users)}
    tr = M.user_lists(ds.train, ds.n_users)
    masks = {"valid": tr, "test": [np.concatenate([a, b]) for a, b in zip(tr, truth["valid"])]}
    return ds, (truth, masks)


def start_daemon(args, ds, prefix):
    """A working directory, icpnsd serving the training split from it, and a client."""
    import icpns_client as ic
    work = tempfile.mkdtemp(prefix=prefix)
    daemon = Daemon(args.icpnsd, ds, args.alpha, work, os.path.join(work, "icpnsd.log"))
    return work, daemon, ic.Client(daemon.url, token=daemon.token)


def evaluate(model, ds, split, truth_lists, mask_lists, k=10):
    from icpns_experiment import models as MD
    s = MD.scores(model)
    return M.rank_metrics(s, truth_lists[split], mask_lists[split], k)


def train(model, ds, client, sampler, args, seed, epochs, lists, progress, label, extra=None):
    """BPR training with negatives from the daemon; early stopping on
    validation NDCG@10. Returns (best state, best valid, epochs run, history of
    (validation NDCG@10, training seconds) per epoch)."""
    import torch
    from icpns_experiment import models as MD
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(seed)
    strategy = {"icpns": "icpns", "pns": "popularity", "rns": "uniform", "hns": "uniform"}[sampler]
    m = args.hns_candidates if sampler == "hns" else 1
    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    t0 = time.time()
    history = []  # (validation NDCG@10, seconds of training) per epoch
    n = len(ds.train)
    for epoch in range(1, epochs + 1):
        te = time.time()
        perm = torch.randperm(n, generator=gen).numpy()
        batches = [ds.train[perm[b:b + args.batch]] for b in range(0, n, args.batch)]
        loss_sum = 0.0
        pf = client.prefetch((ds.user_ids[b[:, 0]] for b in batches), n=1, strategy=strategy,
                             seed=seed * 100003 + epoch, depth=2, candidates=m, **(extra or {}))
        with pf:
            for b, (_, neg) in zip(batches, pf):
                items = np.searchsorted(ds.item_ids, neg.items.reshape(len(b), m))
                u = torch.as_tensor(b[:, 0])
                i = torch.as_tensor(b[:, 1])
                if m > 1:  # hard negatives: the best-scored of m uniform candidates
                    with torch.no_grad():
                        users, its = model.propagate()
                        sc = (users[u].unsqueeze(1) * its[torch.as_tensor(items)]).sum(-1)
                        pick = sc.argmax(1).numpy()
                    j = torch.as_tensor(items[np.arange(len(b)), pick])
                else:
                    j = torch.as_tensor(items[:, 0])
                loss_sum += MD.bpr_step(model, opt, u, i, j, args.reg) * len(b)
        train_seconds = time.time() - te
        model.eval()
        valid = evaluate(model, ds, "valid", *lists)
        model.train()
        history.append((valid["ndcg"], train_seconds))
        if valid["ndcg"] > best:
            best, best_epoch, bad = valid["ndcg"], epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        progress("%s epoch %d/%d loss %.4f valid NDCG@10 %.4f (best %.4f @%d) %.0fs" %
                 (label, epoch, epochs, loss_sum / n, valid["ndcg"], best, best_epoch,
                  time.time() - t0))
        if bad >= args.patience:
            break
    progress("%s done: best valid NDCG@10 %.4f at epoch %d of %d (%.0fs)" %
             (label, best, best_epoch, epoch, time.time() - t0), final=True)
    return best_state, best, epoch, history


def run(args):
    import torch
    from icpns_experiment import models as MD
    torch.set_num_threads(args.torch_threads)
    progress = Progress(args.quiet)
    if not os.path.exists(args.data):
        print("two_stage: %s not found; skipping (MovieLens-100K is not shipped with the "
              "repository; point --data at u.data, a RecBole .inter or a train.txt/test.txt "
              "directory)" % args.data)
        return 0
    ds, lists = load_data(args)
    progress(ds.stats(), final=True)
    work, daemon, client = start_daemon(args, ds, "icpns-experiment-")
    results = []
    t_start = time.time()
    try:
        for model_name in args.models:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = MD.make(model_name, ds, args.dim)
                label = "[%s seed %d stage 1 RNS]" % (MODELS[model_name], seed)
                state, _, ep1, hist1 = train(model, ds, client, "rns", args, seed, args.epochs,
                                             lists, progress, label)
                model.load_state_dict(state)
                model.eval()
                test = evaluate(model, ds, "test", *lists)
                results.append({"model": model_name, "seed": seed, "stage": 1, "sampler": "rns",
                                "epochs": ep1, "history": hist1, **test})
                emb = MD.user_embeddings(model)
                t0 = time.time()
                cl = client.cluster(ds.user_ids, emb, k=args.k, seed=seed, restarts=args.restarts)
                progress("[%s seed %d] clustered %d users into %d communities (sizes %s, "
                         "inertia %.4g) in %.2fs; version %d" %
                         (MODELS[model_name], seed, len(ds.user_ids), cl["k"], cl["sizes"],
                          cl["inertia"], time.time() - t0, cl["version"]), final=True)
                for sampler in args.samplers:
                    torch.manual_seed(seed + 1)
                    model.load_state_dict(state)
                    model.train()
                    label = "[%s seed %d stage 2 %s]" % (MODELS[model_name], seed, SAMPLERS[sampler])
                    st2, _, ep2, hist2 = train(model, ds, client, sampler, args, seed + 7919,
                                               args.epochs, lists, progress, label)
                    model.load_state_dict(st2)
                    model.eval()
                    test = evaluate(model, ds, "test", *lists)
                    results.append({"model": model_name, "seed": seed, "stage": 2,
                                    "sampler": sampler, "epochs": ep2, "communities": cl["sizes"],
                                    "history": hist2, **test})
                    progress("%s test Recall@10 %.4f NDCG@10 %.4f MRR@10 %.4f" %
                             (label, test["recall"], test["ndcg"], test["mrr"]), final=True)
                    save_partial(args.json, ds, results, time.time() - t_start)
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.time() - t_start
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "dataset": ds.stats(), "results": results,
                       "seconds": elapsed,
                       "command": " ".join(["examples/two_stage.py"] + sys.argv[1:])}, f, indent=1)
        if os.path.exists(args.json + ".partial"):
            os.remove(args.json + ".partial")
    render(args)
    return 0


def run_sweep(args):
    """The sensitivity study: one stage-1 model per (model, seed), its users
    clustered into every K (one table set per K, side by side in one
    daemon), then an ICPNS fine-tune for every (K, alpha), alpha asked per
    request."""
    import torch
    from icpns_experiment import models as MD
    torch.set_num_threads(args.torch_threads)
    progress = Progress(args.quiet)
    if not os.path.exists(args.data):
        print("two_stage: %s not found; skipping the sweep" % args.data)
        return 0
    ds, lists = load_data(args)
    progress(ds.stats(), final=True)
    work, daemon, client = start_daemon(args, ds, "icpns-sweep-")
    results, t_start = [], time.time()
    try:
        for k in args.sweep_ks:  # one table set per K, same interactions
            d = os.path.join(work, "k%d" % k)
            shutil.copytree(daemon.tables, d)
            client.add_table_set("k%d" % k, d)
        for model_name in args.models:
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = MD.make(model_name, ds, args.dim)
                state, _, ep1, _ = train(model, ds, client, "rns", args, seed, args.epochs, lists,
                                         progress, "[%s seed %d stage 1 RNS]" % (MODELS[model_name], seed))
                model.load_state_dict(state)
                model.eval()
                base = evaluate(model, ds, "test", *lists)
                results.append({"model": model_name, "seed": seed, "stage": 1, "epochs": ep1, **base})
                emb = MD.user_embeddings(model)
                for k in args.sweep_ks:
                    cl = client.cluster(ds.user_ids, emb, k=k, seed=seed, restarts=args.restarts,
                                        tables="k%d" % k)
                    for alpha in args.sweep_alphas:
                        torch.manual_seed(seed + 1)
                        model.load_state_dict(state)
                        model.train()
                        label = "[%s seed %d K=%d alpha=%g]" % (MODELS[model_name], seed, k, alpha)
                        st2, _, ep2, _ = train(model, ds, client, "icpns", args, seed + 7919,
                                               args.epochs, lists, progress, label,
                                               extra={"tables": "k%d" % k, "alpha": float(alpha)})
                        model.load_state_dict(st2)
                        model.eval()
                        test = evaluate(model, ds, "test", *lists)
                        results.append({"model": model_name, "seed": seed, "stage": 2, "k": k,
                                        "alpha": alpha, "epochs": ep2, "sizes": cl["sizes"], **test})
                        save_partial(args.sweep_json, ds, results, time.time() - t_start)
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    saved = {"args": vars(args), "dataset": ds.stats(), "results": results,
             "seconds": time.time() - t_start,
             "command": " ".join(["examples/two_stage.py"] + sys.argv[1:])}
    if os.path.exists(args.sweep_json):
        with open(args.sweep_json) as f:
            old = json.load(f)
        try:
            saved = merge_sweeps(old, saved)
            print("two_stage: added to the sweep in %s (models: %s)" % (
                args.sweep_json, ", ".join(saved["args"]["models"])))
        except ValueError as e:
            print("two_stage: replacing %s (%s)" % (args.sweep_json, e))
    with open(args.sweep_json, "w") as f:
        json.dump(saved, f, indent=1)
    if os.path.exists(args.sweep_json + ".partial"):
        os.remove(args.sweep_json + ".partial")
    render(args)
    return 0


# The settings that make two sweeps comparable (and so mergeable).
PROTOCOL = ("seeds", "k", "restarts", "epochs", "patience", "batch", "lr", "reg", "dim",
            "min_rating", "core", "split_seed", "torch_threads", "sweep_alphas", "sweep_ks")


def merge_sweeps(old, new):
    """One saved sweep from runs of different models with the same protocol
    and data: the new run's models replace theirs in @old, the others stay.
    ValueError when the protocols differ."""
    oa, na = old["args"], new["args"]
    for key in PROTOCOL:
        if oa.get(key) != na.get(key):
            raise ValueError("%s differs: %r vs %r" % (key, oa.get(key), na.get(key)))
    if os.path.basename(oa.get("data", "")) != os.path.basename(na.get("data", "")):
        raise ValueError("another dataset")
    mine = set(na["models"])
    results = [r for r in old["results"] if r["model"] not in mine] + new["results"]
    runs = old.get("runs") or [{"command": old.get("command", ""), "seconds": old["seconds"],
                                "models": oa["models"]}]
    runs = [r for r in runs if not set(r["models"]) <= mine]
    runs.append({"command": new.get("command", ""), "seconds": new["seconds"],
                 "models": na["models"]})
    args = {k: oa[k] for k in oa if k in PROTOCOL or k in ("data", "sweep", "samplers", "alpha")}
    args["models"] = [m for m in MODELS if any(r["model"] == m for r in results)]
    return {"args": args, "dataset": new["dataset"], "results": results, "runs": runs,
            "seconds": sum(r["seconds"] for r in runs),
            "command": "; ".join(r["command"] for r in runs)}


def sweep_markdown(saved):
    args = argparse.Namespace(**saved["args"])
    res = saved["results"]
    runs = saved.get("runs") or [{"command": saved.get("command", "examples/two_stage.py --sweep"),
                                  "seconds": saved["seconds"]}]
    generated = " and ".join("`%s` (%.0f minutes)" % (r["command"], r["seconds"] / 60) for r in runs)
    lines = ["", "## Sensitivity: K (communities) x alpha (smoothing)", "",
             "Generated by %s. One stage-1 RNS model per model and seed; its "
             "user embeddings clustered into K communities for each K, each K a table set of "
             "one daemon (`k4`, `k8`, `k16`); then an ICPNS fine-tune from the stage-1 model "
             "for every (K, alpha), alpha given per request. Same protocol and budget as above; "
             "seeds %s; test NDCG@10, mean ± std (Recall@10 in the second table)." % (
                 generated, ", ".join(str(x) for x in args.seeds)), ""]
    for metric in ("ndcg", "recall"):
        for model_name in args.models:
            base = [r[metric] for r in res if r["model"] == model_name and r["stage"] == 1]
            if not base:
                continue
            lines.append("**%s, %s@10** (stage 1 RNS: %s)" % (
                MODELS[model_name], "NDCG" if metric == "ndcg" else "Recall", fmt(base)))
            lines.append("")
            lines.append("| K | " + " | ".join("alpha = %g" % a for a in args.sweep_alphas) + " |")
            lines.append("|---|" + "---|" * len(args.sweep_alphas))
            for k in args.sweep_ks:
                cells = []
                for a in args.sweep_alphas:
                    v = [r[metric] for r in res if r["model"] == model_name and r["stage"] == 2
                         and r["k"] == k and r["alpha"] == a]
                    cells.append(fmt(v) if v else "-")
                lines.append("| %d | %s |" % (k, " | ".join(cells)))
            lines.append("")
    return "\n".join(lines)


def render(args):
    """docs/results.md from the saved runs (the comparison, then the sweep)."""
    text = ""
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            saved = json.load(f)
        old = argparse.Namespace(**saved["args"])
        old.json, old.out = args.json, args.out
        ds = argparse.Namespace(name=os.path.basename(os.path.dirname(old.data)) or "data",
                                stats=lambda: saved["dataset"])
        text = markdown(old, ds, saved["results"], saved["seconds"], saved.get("command"))
    if args.timing_json and os.path.exists(args.timing_json):
        with open(args.timing_json) as f:
            text += timing_markdown(json.load(f))
    if args.sweep_json and os.path.exists(args.sweep_json):
        with open(args.sweep_json) as f:
            text += sweep_markdown(json.load(f))
    notes = os.path.join(os.path.dirname(args.out or "."), "results-discussion.md")
    if text and os.path.exists(notes):
        with open(notes) as f:
            text += "\n" + f.read()
    if args.out and text:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        print("two_stage: wrote %s" % args.out)


def run_timing(args):
    """Seconds per training epoch for each model and sampler, measured apart
    (a few epochs each, the machine otherwise idle) so that the figures are
    comparable: the long runs share the machine with other work."""
    import torch
    from icpns_experiment import models as MD
    torch.set_num_threads(args.torch_threads)
    if not os.path.exists(args.data):
        print("two_stage: %s not found; skipping the timing" % args.data)
        return 0
    ds, lists = load_data(args)
    work, daemon, client = start_daemon(args, ds, "icpns-timing-")
    progress = Progress(args.quiet)
    timing = []
    try:
        for model_name in args.models:
            torch.manual_seed(1)
            model = MD.make(model_name, ds, args.dim)
            client.cluster(ds.user_ids, MD.user_embeddings(model), k=args.k, seed=1, restarts=1)
            for sampler in ["rns"] + [s for s in args.samplers if s != "rns"]:
                _, _, _, hist = train(model, ds, client, sampler, args, 1, args.timing_epochs,
                                      lists, progress, "[timing %s %s]" % (model_name, sampler))
                secs = [h[1] for h in hist[1:]]  # the first epoch warms up
                timing.append({"model": model_name, "sampler": sampler,
                               "seconds": float(np.median(secs)), "epochs": len(secs)})
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(args.timing_json, "w") as f:
        json.dump({"timing": timing, "batch": args.batch, "train": len(ds.train),
                   "command": " ".join(["examples/two_stage.py"] + sys.argv[1:])}, f, indent=1)
    render(args)
    return 0


def timing_markdown(saved):
    t = saved["timing"]
    models = sorted({r["model"] for r in t}, key=lambda m: list(MODELS).index(m))
    samplers = [s for s in SAMPLERS if any(r["sampler"] == s for r in t)]
    lines = ["", "## Training time per epoch", "",
             "Median seconds of one training epoch (%d training pairs in batches of %d, one "
             "negative per positive drawn from the daemon, forward and backward; validation "
             "excluded), measured apart with the machine otherwise idle by `%s`: one thread for "
             "PyTorch, 2 cores shared with the daemon." % (
                 saved["train"], saved["batch"], saved.get("command", "")), "",
             "| model | " + " | ".join(SAMPLERS[s] for s in samplers) + " |",
             "|---|" + "---|" * len(samplers)]
    for m in models:
        cells = []
        for s in samplers:
            v = [r["seconds"] for r in t if r["model"] == m and r["sampler"] == s]
            cells.append("%.2f s" % v[0] if v else "-")
        lines.append("| %s | %s |" % (MODELS[m], " | ".join(cells)))
    return "\n".join(lines) + "\n"


def save_partial(path, ds, results, elapsed):
    """Keeps the runs done so far (a long experiment survives an interruption)."""
    if path:
        with open(path + ".partial", "w") as f:
            json.dump({"dataset": ds.stats(), "results": results, "seconds": elapsed}, f, indent=1)


def fmt(vals):
    a = np.array(vals)
    return "%.4f ± %.4f" % (a.mean(), a.std(ddof=1) if len(a) > 1 else 0.0)


def markdown(args, ds, results, elapsed, command=None):
    has_secs = any(h[1] is not None for r in results for h in r.get("history", []))
    command = command or " ".join(["examples/two_stage.py"] + sys.argv[1:])
    lines = ["# Results: the ICPNS two-stage scheme on %s" % ds.name, "",
             "Generated by `%s` (%.0f minutes on this 2-core machine); rerun it to "
             "reproduce, or `examples/two_stage.py --report` to re-render this page from "
             "`%s`." % (command, elapsed / 60,
                        os.path.relpath(args.json, ROOT) if args.json else "the JSON"), "",
             "- Data: %s." % ds.stats(),
             "- Protocol: ratings >= %g, %d-core filtering, random 8:1:1 split per user "
             "(seed %d); full ranking over all items with training (and, for test, validation) "
             "positives masked; model selection and early stopping (patience %d epochs) on "
             "validation NDCG@10." % (args.min_rating, args.core, args.split_seed, args.patience),
             "- Models: %d-dim embeddings, Adam lr %g, batch %d, L2 %g, at most %d epochs per "
             "stage; LightGCN with 3 layers." % (args.dim, args.lr, args.batch, args.reg,
                                                 args.epochs),
             "- Stage 1: uniform negatives (RNS) from icpnsd. Stage 2: the stage-1 user "
             "embeddings (LightGCN: final propagated) clustered by `POST /admin/cluster` "
             "(k-means, K = %d, %d restarts), then fine-tuning from the stage-1 model with "
             "each sampler, one negative per positive: ICPNS (alpha %g), PNS (beta 1), RNS, "
             "HNS (best of %d uniform candidates by model score)." % (
                 args.k, args.restarts, args.alpha, args.hns_candidates),
             "- Seeds: %s (model initialisation and negatives); mean ± sample std over seeds." %
             ", ".join(str(s) for s in args.seeds), "",
             "| model | training | Recall@10 | NDCG@10 | MRR@10 | epochs |%s" % (
                 " s / epoch |" if has_secs else ""),
             "|---|---|---|---|---|---|%s" % ("---|" if has_secs else "")]
    for model_name in args.models:
        rows = [("stage 1 (RNS)", [r for r in results if r["model"] == model_name and r["stage"] == 1])]
        for s in args.samplers:
            rows.append(("stage 2 + %s" % SAMPLERS[s],
                         [r for r in results if r["model"] == model_name and r["stage"] == 2
                          and r["sampler"] == s]))
        for name, rs in rows:
            if not rs:
                continue
            secs = [h[1] for r in rs for h in r.get("history", []) if h[1] is not None]
            lines.append("| %s | %s | %s | %s | %s | %.0f |%s" % (
                MODELS[model_name], name, fmt([r["recall"] for r in rs]),
                fmt([r["ndcg"] for r in rs]), fmt([r["mrr"] for r in rs]),
                np.mean([r["epochs"] for r in rs]),
                (" %.2f |" % np.median(secs) if secs else " - |") if has_secs else ""))
    lines += ["", "Epochs: mean number trained per run (early stopping included)." +
              (" s / epoch: median seconds of one training epoch (negatives from the daemon, "
               "forward, backward; validation excluded) on this shared 2-core machine."
               if has_secs else " Seconds per epoch: the timing table below."), ""]
    png = plot_curves(args, results)
    if png:
        lines += ["![validation NDCG@10 per epoch](%s)" % os.path.basename(png), "",
                  "Validation NDCG@10 per epoch, mean over seeds (stage 1 left; stage 2 from "
                  "the best stage-1 model, right).", ""]
    lines += ["Per-run figures: `%s`." % (os.path.relpath(args.json, ROOT) if args.json
                                          else "(not kept)")]
    return "\n".join(lines)


def plot_curves(args, results):
    """docs/results-curves.png: validation NDCG@10 per epoch, mean over seeds."""
    if not args.out or not any(r.get("history") for r in results):
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = [m for m in args.models if any(r["model"] == m for r in results)]
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    for row, m in enumerate(models):
        for col, stage in enumerate((1, 2)):
            ax = axes[row][col]
            names = ["rns"] if stage == 1 else args.samplers
            for s_name in names:
                hs = [[h[0] for h in r["history"]] for r in results if r["model"] == m
                      and r["stage"] == stage and r.get("sampler", "rns") == s_name and r.get("history")]
                if not hs:
                    continue
                n = min(len(h) for h in hs)
                ax.plot(range(1, n + 1), np.mean([h[:n] for h in hs], axis=0),
                        label=("stage 1 RNS" if stage == 1 else SAMPLERS[s_name]))
            ax.set_title("%s, stage %d" % (MODELS[m], stage))
            ax.set_xlabel("epoch")
            ax.set_ylabel("valid NDCG@10")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    path = os.path.join(os.path.dirname(args.out), "results-curves.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "ml-100k", "u.data"),
                   help="u.data / pairs file, RecBole .inter, or a directory (default: MovieLens-100K in ../shared/data)")
    p.add_argument("--models", default="bpr,lightgcn", help="comma list of bpr, lightgcn")
    p.add_argument("--samplers", default="icpns,pns,rns,hns", help="stage-2 samplers")
    p.add_argument("--seeds", default="2026,2027,2028", help="comma list (>= 3 for mean ± std)")
    p.add_argument("--k", type=int, default=8, help="communities (default 8)")
    p.add_argument("--alpha", type=float, default=0.8, help="ICPNS smoothing exponent (default 0.8)")
    p.add_argument("--restarts", type=int, default=10, help="k-means restarts")
    p.add_argument("--epochs", type=int, default=400, help="max epochs per stage")
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience in epochs")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--hns-candidates", type=int, default=8)
    p.add_argument("--min-rating", type=float, default=3.0)
    p.add_argument("--core", type=int, default=10)
    p.add_argument("--split-seed", type=int, default=2026)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--icpnsd", default=os.path.join(ROOT, "build", "src", "daemon", "icpnsd"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "results.json"))
    p.add_argument("--quick", action="store_true", help="one seed, few epochs: a smoke run")
    p.add_argument("--no-report", dest="out", action="store_const", const=None,
                   help="do not write the markdown")
    p.add_argument("--report", action="store_true",
                   help="only re-render --out from the JSON files of earlier runs")
    p.add_argument("--sweep", action="store_true",
                   help="the sensitivity study: ICPNS over K x alpha (one table set per K, "
                        "alpha per request) instead of the sampler comparison")
    p.add_argument("--sweep-alphas", default="0,0.1,0.4,0.8,1.0")
    p.add_argument("--sweep-ks", default="4,8,16")
    p.add_argument("--sweep-json", default=os.path.join(ROOT, "docs", "results-sweep.json"))
    p.add_argument("--timing", action="store_true",
                   help="measure seconds per training epoch for each model and sampler")
    p.add_argument("--timing-epochs", type=int, default=6)
    p.add_argument("--timing-json", default=os.path.join(ROOT, "docs", "results-timing.json"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.samplers = [s for s in args.samplers.split(",") if s]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    for m in args.models:
        if m not in MODELS:
            p.error("unknown model %r" % m)
    for s in args.samplers:
        if s not in SAMPLERS:
            p.error("unknown sampler %r" % s)
    if args.quick:
        args.seeds, args.epochs, args.patience = args.seeds[:1], 3, 3
    args.sweep_alphas = [float(a) for a in args.sweep_alphas.split(",") if a]
    args.sweep_ks = [int(k) for k in args.sweep_ks.split(",") if k]
    if args.report:
        render(args)
        return 0
    if not os.access(args.icpnsd, os.X_OK):
        p.error("%s is not an executable icpnsd (build it: scripts/run.sh, or --icpnsd PATH)" % args.icpnsd)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("two_stage: PyTorch is not installed (apt-get install python3-torch); skipping")
        return 0
    if args.timing:
        return run_timing(args)
    return run_sweep(args) if args.sweep else run(args)


if __name__ == "__main__":
    sys.exit(main())
