#!/usr/bin/python3
"""The ICPNS two-stage experiment, end to end against a real icpnsd.

Stage 1 trains BPR-MF / LightGCN with uniform negatives (RNS) from the
daemon until validation NDCG@10 stops improving. Stage 2 uploads the
stage-1 user embeddings (LightGCN: the final propagated ones) to
POST /admin/cluster (k-means, K communities) and fine-tunes from the best
stage-1 model with each sampler: ICPNS, PNS, continued RNS, and
trainer-side hard negatives (HNS: the best of m uniform candidates by model
score), all drawn from the daemon. Budgets are optimizer steps; stage 2 is
compared with early stopping and at an equal budget of B steps per sampler.
Results (mean ± std over seeds of Recall@10, NDCG@10, MRR@10 on the test
split, models selected on validation NDCG@10) go to docs/results.md.

This is also the reference integration of icpns_client.torch: the training
pairs and their negatives reach the loop as a NegativeDataset read by a
torch DataLoader (make_loader, optimizer_steps, train below).

    examples/two_stage.py                      # MovieLens-100K from ../shared/data
    examples/two_stage.py --quick              # a short smoke run
    examples/two_stage.py --data DIR_OR_FILE   # u.data, ratings.csv/.dat, RecBole .inter,
                                               # train.txt/test.txt, adjacency or sequence lists
    examples/two_stage.py --sweep              # ICPNS over K x alpha
    examples/two_stage.py --timing             # seconds per epoch and step, DataLoader workers
    examples/two_stage.py --report             # re-render docs/results.md from the JSON files

Needs Debian's python3-torch and python3-numpy, a built icpnsd and
libicpns.so (found as icpns_client finds it: ICPNS_LIBRARY, the installed
library, or a build directory of this checkout).
"""
import argparse
import hashlib
import itertools
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
from icpns_experiment import report as R  # noqa: E402
from icpns_experiment.report import MODELS, SAMPLERS  # noqa: E402

# The daemon's strategy behind each sampler (HNS: uniform candidates, the
# hardest picked by the trainer).
STRATEGY = {"icpns": "icpns", "pns": "popularity", "rns": "uniform", "hns": "uniform"}
NEVER = 2 ** 62  # a patience that never runs out


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
    """icpnsd on a free loopback port, serving the training split. Its item
    catalogue is every item of the dataset (items.tsv), so that the dense
    item ids it hands out are the rows of the models' item tables."""

    def __init__(self, binary, ds, alpha, workdir, log):
        self.tables = os.path.join(workdir, "tables")
        os.makedirs(self.tables, exist_ok=True)
        with open(os.path.join(self.tables, "interactions.tsv"), "w") as f:
            f.write("# user\titem (training split only: the positives excluded from negatives)\n")
            for u, i in ds.raw(ds.train):
                f.write("%d\t%d\n" % (u, i))
        with open(os.path.join(self.tables, "items.tsv"), "w") as f:
            f.write("# every item of the dataset, also those without training pairs\n")
            f.writelines("%d\n" % i for i in ds.item_ids)
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
    training positives; for the test split also the validation ones). Also
    resolves the step budgets, some of which default to epochs of this data."""
    ds = D.load(args.data, min_rating=args.min_rating, core=args.core, seed=args.split_seed)
    truth = {"valid": M.user_lists(ds.valid, ds.n_users), "test": M.user_lists(ds.test, ds.n_users)}
    tr = M.user_lists(ds.train, ds.n_users)
    masks = {"valid": tr, "test": [np.concatenate([a, b]) for a, b in zip(tr, truth["valid"])]}
    resolve_budgets(args, -(-len(ds.train) // args.batch))
    return ds, (truth, masks)


def resolve_budgets(args, steps_per_epoch):
    args.steps_per_epoch = steps_per_epoch
    if args.quick:  # a few epochs of whatever data: a smoke run
        args.patience_steps, args.min_steps = 2 * steps_per_epoch, 0
        args.max_steps, args.stage2_steps = 3 * steps_per_epoch, 2 * steps_per_epoch
    if args.eval_every is None:
        args.eval_every = steps_per_epoch


def start_daemon(args, ds, prefix):
    """A working directory, icpnsd serving the training split from it, and a
    client. The daemon's catalogue must be the dataset's items, in the same
    (ascending) order: dense ids index the item embeddings."""
    import icpns_client as ic
    work = tempfile.mkdtemp(prefix=prefix)
    daemon = Daemon(args.icpnsd, ds, args.alpha, work, os.path.join(work, "icpnsd.log"))
    client = ic.Client(daemon.url, token=daemon.token)
    if not np.array_equal(client.items(), ds.item_ids):
        raise SystemExit("icpnsd's item catalogue (%d items) is not the dataset's (%d)" %
                         (len(client.items()), ds.n_items))
    return work, daemon, client


def evaluate(model, split, lists, k=10):
    from icpns_experiment import models as MD
    truth, masks = lists
    return M.rank_metrics(MD.scores(model), truth[split], masks[split], k)


# -- the training loop: negatives through NegativeDataset and a DataLoader ----

def make_loader(client, ds, sampler, args, seed, workers, **options):
    """The training pairs and their negatives from icpnsd, one batch per
    optimizer step: a NegativeDataset (one request per batch of
    args.batch pairs, n=1 negative per positive; the shuffle and every
    request's seed are functions of (seed, epoch), so a pass is the same
    whatever the number of workers) read by a DataLoader whose worker
    processes make the requests ahead of the training loop. Items come as
    dense ids (rows of the item table; ids="dense"), users as the daemon's
    ids. HNS asks for m uniform candidates per negative slot. @options go to
    the dataset (tables=...) or to each request (alpha=...)."""
    import torch
    from icpns_client.torch import NegativeDataset
    if sampler == "hns":
        options["candidates"] = args.hns_candidates
    data = NegativeDataset(client, ds.raw(ds.train), n=1, strategy=STRATEGY[sampler],
                           batch_size=args.batch, seed=seed, ids="dense", **options)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=workers,
                                         persistent_workers=workers > 0)
    return data, loader


def optimizer_steps(data, loader):
    """(step, batch) for step = 1, 2, ...: pass after pass over the training
    pairs, each pass's epoch set before it starts (the workers read it
    then), so every epoch has its own shuffle and negatives."""
    step = 0
    for epoch in itertools.count():
        data.set_epoch(epoch)
        for batch in loader:
            step += 1
            yield step, batch


def hardest(model, users, candidates):
    """HNS: of the m uniform candidates of each positive ([B, m] item rows),
    the one the current model scores highest."""
    import torch
    with torch.no_grad():
        user_emb, item_emb = model.propagate()
        scores = (user_emb[users].unsqueeze(1) * item_emb[candidates]).sum(-1)
    return candidates.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


class Budget:
    """When a run validates and when it ends, in optimizer steps.

    Validation every `eval_every` steps. The early-stopping rule fires when
    validation NDCG@10 has not improved for `patience` steps, once
    `min_steps` are done, or at `max_steps`. With `equal` (stage 2's equal
    budgets) the run also lasts at least `equal` steps whatever the rule
    says, and the best model within exactly those steps is kept too."""

    def __init__(self, eval_every, patience, min_steps, max_steps, equal=None):
        self.eval_every, self.patience = eval_every, patience
        self.min_steps, self.max_steps, self.equal = min_steps, max_steps, equal

    def validates(self, step):
        return step % self.eval_every == 0 or step in (self.max_steps, self.equal)

    def exhausted(self, step, best_step):
        """Why the rule fires at validation step @step, or None."""
        if step >= self.min_steps and step - best_step >= self.patience:
            return "patience"
        return "max_steps" if step >= self.max_steps else None


class Best:
    """The validation-best model state so far and its step."""

    def __init__(self):
        self.ndcg, self.step, self.state = -1.0, 0, None

    def offer(self, ndcg, step, model):
        if ndcg > self.ndcg:
            self.ndcg, self.step = ndcg, step
            self.state = {k: v.clone() for k, v in model.state_dict().items()}

    def summary(self, steps):
        return {"steps": steps, "best_step": self.step, "valid": self.ndcg}


def train(model, ds, data, loader, lists, budget, args, progress, label):
    """BPR training on the loader's batches until @budget ends. Returns
    (run, states): run = {"steps", "epochs", "history": [[step, validation
    NDCG@10, training seconds since the previous validation], ...],
    "early": {"steps" (where the rule fired), "best_step", "valid",
    "stopped"}, and "equal": {"steps": B, "best_step", "valid"} with an
    equal budget}; states = the model states "early" and "equal" keep."""
    import torch
    from icpns_experiment import models as MD
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    user_rows = torch.as_tensor(ds.user_ids)  # the daemon's user ids, ascending: row = position
    early, equal, fired, why = Best(), Best(), None, None
    history, t0, tick = [], time.time(), time.time()
    steps = optimizer_steps(data, loader)
    try:
        for step, batch in steps:
            users = torch.searchsorted(user_rows, batch["users"])
            negatives = batch["negatives"][:, 0]  # n = 1: [B] items, or [B, m] HNS candidates
            if negatives.dim() == 2:
                negatives = hardest(model, users, negatives)
            loss = MD.bpr_step(model, opt, users, batch["positives"], negatives, args.reg)
            if not budget.validates(step):
                continue
            seconds = time.time() - tick
            ndcg = evaluate(model, "valid", lists)["ndcg"]
            history.append([step, round(ndcg, 6), round(seconds, 4)])
            if fired is None:
                early.offer(ndcg, step, model)
                why = budget.exhausted(step, early.step)
                fired = step if why else None
            if budget.equal and step <= budget.equal:
                equal.offer(ndcg, step, model)
            progress("%s step %d (epoch %.1f) loss %.4f valid NDCG@10 %.4f (best %.4f @%d) %.0fs" %
                     (label, step, step / len(data), loss, ndcg, early.ndcg, early.step,
                      time.time() - t0))
            if fired is not None and step >= (budget.equal or 0):
                break
            tick = time.time()
    finally:
        steps.close()
    run = {"steps": step, "epochs": step / len(data), "history": history,
           "early": dict(early.summary(fired), epochs=fired / len(data), stopped=why)}
    states = {"early": early.state}
    if budget.equal:
        run["equal"] = dict(equal.summary(budget.equal), epochs=budget.equal / len(data))
        states["equal"] = equal.state
    progress("%s done: %d steps; best valid NDCG@10 %.4f at step %d, the rule fired at step %d "
             "(%s)%s, %.0fs" % (label, step, early.ndcg, early.step, fired, why,
                                "; within B = %d: %.4f at step %d" % (budget.equal, equal.ndcg,
                                                                      equal.step)
                                if budget.equal else "", time.time() - t0), final=True)
    return run, states


def test_metrics(model, state, lists):
    model.load_state_dict(state)
    return evaluate(model, "test", lists)


def stage1_key(args, ds, model_name, seed):
    """What a stage-1 model depends on (the cache's key)."""
    keys = ("min_rating", "core", "split_seed", "dim", "lr", "reg", "batch", "eval_every",
            "patience_steps", "min_steps", "max_steps", "torch_threads")
    desc = dict({k: getattr(args, k) for k in keys}, model=model_name, seed=seed,
                data=os.path.abspath(args.data), dataset=ds.stats())
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def stage1(model_name, seed, ds, client, lists, args, progress):
    """The stage-1 RNS model of (model, seed) under the early-stopping rule,
    or the one --stage1-cache kept from an earlier run of the same protocol
    (training is deterministic: the same seeds give the same negatives and
    the same steps). Returns (model at its best state, that state, result
    row)."""
    import torch
    from icpns_experiment import models as MD
    torch.manual_seed(seed)
    model = MD.make(model_name, ds, args.dim)
    path = None
    if args.stage1_cache:
        os.makedirs(args.stage1_cache, exist_ok=True)
        path = os.path.join(args.stage1_cache, "stage1-%s-%d-%s.pt" % (
            model_name, seed, stage1_key(args, ds, model_name, seed)))
        if os.path.exists(path):
            kept = torch.load(path)
            model.load_state_dict(kept["state"])
            progress("[%s seed %d stage 1 RNS] from %s" % (MODELS[model_name], seed, path),
                     final=True)
            return model, kept["state"], kept["row"]
    label = "[%s seed %d stage 1 RNS]" % (MODELS[model_name], seed)
    data, loader = make_loader(client, ds, "rns", args, seed, args.workers)
    budget = Budget(args.eval_every, args.patience_steps, args.min_steps, args.max_steps)
    run, states = train(model, ds, data, loader, lists, budget, args, progress, label)
    row = dict({"model": model_name, "seed": seed, "stage": 1, "sampler": "rns",
                "history": run["history"]}, **run["early"],
               **test_metrics(model, states["early"], lists))
    if path:
        torch.save({"state": states["early"], "row": row}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return model, states["early"], row


def stage2(model, state1, ds, client, lists, args, progress, label, sampler, seed, **options):
    """One fine-tune from @state1 with @sampler: a run until both (a) the
    early-stopping rule (args.stage2_min_steps as its minimum) and (b) the
    equal budget B = args.stage2_steps are decided; test metrics of both
    models."""
    model.load_state_dict(state1)
    data, loader = make_loader(client, ds, sampler, args, seed, args.workers, **options)
    budget = Budget(args.eval_every, args.patience_steps, args.stage2_min_steps, args.max_steps,
                    equal=args.stage2_steps)
    run, states = train(model, ds, data, loader, lists, budget, args, progress, label)
    for key in ("early", "equal"):
        run[key].update(test_metrics(model, states[key], lists))
    progress("%s test NDCG@10 %.4f early-stopped, %.4f at B" % (
        label, run["early"]["ndcg"], run["equal"]["ndcg"]), final=True)
    return run


def saved_runs(args, ds, results, seconds):
    return {"args": vars(args), "name": ds.name, "dataset": ds.stats(),
            "steps_per_epoch": args.steps_per_epoch, "results": results, "seconds": seconds,
            "nice": os.nice(0), "command": " ".join(["examples/two_stage.py"] + sys.argv[1:])}


def save(path, saved, partial=False):
    """The runs so far to path.partial (a long experiment survives an
    interruption), or all of them to path."""
    if not path:
        return
    with open(path + (".partial" if partial else ""), "w") as f:
        json.dump(saved, f, indent=1)
    if not partial and os.path.exists(path + ".partial"):
        os.remove(path + ".partial")


def prepare(args, prefix, progress):
    """torch's threads, the data, and a daemon serving it."""
    import torch
    torch.set_num_threads(args.torch_threads)
    ds, lists = load_data(args)
    progress(ds.stats(), final=True)
    work, daemon, client = start_daemon(args, ds, prefix)
    return ds, lists, work, daemon, client


def run(args):
    """The sampler comparison: per model and seed, stage 1, clustering, and a
    fine-tune with each sampler."""
    from icpns_experiment import models as MD
    progress = Progress(args.quiet)
    ds, lists, work, daemon, client = prepare(args, "icpns-experiment-", progress)
    results, t_start = [], time.time()
    try:
        for model_name in args.models:
            for seed in args.seeds:
                model, state1, row = stage1(model_name, seed, ds, client, lists, args, progress)
                results.append(row)
                t0 = time.time()
                cl = client.cluster(ds.user_ids, MD.user_embeddings(model), k=args.k, seed=seed,
                                    restarts=args.restarts)
                progress("[%s seed %d] clustered %d users into %d communities (sizes %s, "
                         "inertia %.4g) in %.2fs; version %d" %
                         (MODELS[model_name], seed, len(ds.user_ids), cl["k"], cl["sizes"],
                          cl["inertia"], time.time() - t0, cl["version"]), final=True)
                for sampler in args.samplers:
                    label = "[%s seed %d stage 2 %s]" % (MODELS[model_name], seed, SAMPLERS[sampler])
                    r = stage2(model, state1, ds, client, lists, args, progress, label, sampler,
                               seed + 7919)
                    results.append(dict({"model": model_name, "seed": seed, "stage": 2,
                                         "sampler": sampler, "communities": cl["sizes"]}, **r))
                    save(args.json, saved_runs(args, ds, results, time.time() - t_start), True)
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    save(args.json, saved_runs(args, ds, results, time.time() - t_start))
    R.render(args.json, args.timing_json, args.sweep_json, args.out)
    return 0


def resume_sweep(args, ds):
    """The stage-2 runs an interrupted sweep saved in its .partial file,
    by (model, seed, K, alpha), and the seconds it had taken, when its
    protocol and data are this run's; else nothing.  Each run depends only
    on its own (model, seed, K, alpha) (the stage-1 model, the clustering
    seed and the negatives' seed), so they are the runs this one would do."""
    path = args.sweep_json + ".partial" if args.sweep_json else None
    if not path or not os.path.exists(path):
        return {}, 0.0
    try:
        with open(path) as f:
            old = json.load(f)
        R.same_protocol(old["args"], vars(args))
        if old["dataset"] != ds.stats():
            raise ValueError("another split")
    except (ValueError, KeyError) as e:
        print("two_stage: not resuming from %s (%s)" % (path, e))
        return {}, 0.0
    done = {(r["model"], r["seed"], r["k"], r["alpha"]): r
            for r in old["results"] if r["stage"] == 2}
    print("two_stage: resuming from %s: %d runs done" % (path, len(done)))
    return done, float(old.get("seconds", 0.0))


def run_sweep(args):
    """The sensitivity study: the stage-1 model of each (model, seed), its
    users clustered into every K (one table set per K, side by side in one
    daemon), then an ICPNS fine-tune for every (K, alpha), alpha asked per
    request."""
    from icpns_experiment import models as MD
    progress = Progress(args.quiet)
    ds, lists, work, daemon, client = prepare(args, "icpns-sweep-", progress)
    done, before = resume_sweep(args, ds)
    results, t_start = [], time.time() - before
    try:
        for k in args.sweep_ks:  # one table set per K, same interactions and catalogue
            d = os.path.join(work, "k%d" % k)
            shutil.copytree(daemon.tables, d)
            client.add_table_set("k%d" % k, d)
        for model_name in args.models:
            for seed in args.seeds:
                model, state1, row = stage1(model_name, seed, ds, client, lists, args, progress)
                results.append(dict(row, history=None))  # the curves are in the comparison
                emb = MD.user_embeddings(model)
                for k in args.sweep_ks:
                    cl = client.cluster(ds.user_ids, emb, k=k, seed=seed, restarts=args.restarts,
                                        tables="k%d" % k)
                    for alpha in args.sweep_alphas:
                        if (model_name, seed, k, alpha) in done:  # an interrupted run's
                            results.append(done[model_name, seed, k, alpha])
                            continue
                        label = "[%s seed %d K=%d alpha=%g]" % (MODELS[model_name], seed, k, alpha)
                        r = stage2(model, state1, ds, client, lists, args, progress, label,
                                   "icpns", seed + 7919, tables="k%d" % k, alpha=float(alpha))
                        r["history"] = None  # the curves are in the comparison
                        results.append(dict({"model": model_name, "seed": seed, "stage": 2,
                                             "sampler": "icpns", "k": k, "alpha": alpha,
                                             "communities": cl["sizes"]}, **r))
                        save(args.sweep_json, saved_runs(args, ds, results, time.time() - t_start),
                             True)
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    saved = saved_runs(args, ds, results, time.time() - t_start)
    if os.path.exists(args.sweep_json):
        with open(args.sweep_json) as f:
            old = json.load(f)
        try:
            saved = R.merge_sweeps(old, saved)
            print("two_stage: added to the sweep in %s (models: %s)" % (
                args.sweep_json, ", ".join(saved["args"]["models"])))
        except ValueError as e:
            print("two_stage: replacing %s (%s)" % (args.sweep_json, e))
    save(args.sweep_json, saved)
    R.render(args.json, args.timing_json, args.sweep_json, args.out)
    return 0


def run_timing(args):
    """Seconds per training epoch for each model and sampler with the
    default DataLoader workers, and for RNS with 0, 1 and 2 workers,
    measured apart (a few epochs each) so that the figures are comparable:
    the long runs share the machine with other work."""
    import torch
    from icpns_experiment import models as MD
    progress = Progress(args.quiet)
    ds, lists, work, daemon, client = prepare(args, "icpns-timing-", progress)
    spe = args.steps_per_epoch
    budget = Budget(spe, NEVER, 0, args.timing_epochs * spe)
    timing = []
    try:
        for model_name in args.models:
            torch.manual_seed(1)
            model = MD.make(model_name, ds, args.dim)
            client.cluster(ds.user_ids, MD.user_embeddings(model), k=args.k, seed=1, restarts=1)
            plan = [(s, args.workers) for s in ["rns"] + [s for s in args.samplers if s != "rns"]]
            plan += [("rns", w) for w in (0, 1, 2) if w != args.workers]
            for sampler, workers in plan:
                data, loader = make_loader(client, ds, sampler, args, 1, workers)
                r, _ = train(model, ds, data, loader, lists, budget, args, progress,
                             "[timing %s %s, %d workers]" % (model_name, sampler, workers))
                secs = [h[2] for h in r["history"][1:]]  # the first epoch warms up
                timing.append({"model": model_name, "sampler": sampler, "workers": workers,
                               "seconds": float(np.median(secs)), "epochs": len(secs)})
    finally:
        client.close()
        daemon.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(args.timing_json, "w") as f:
        json.dump({"timing": timing, "batch": args.batch, "train": len(ds.train),
                   "steps_per_epoch": spe, "workers": args.workers,
                   "command": " ".join(["examples/two_stage.py"] + sys.argv[1:])}, f, indent=1)
    R.render(args.json, args.timing_json, args.sweep_json, args.out)
    return 0


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
    b = p.add_argument_group("budgets, in optimizer steps (see docs/results.md for the defaults)")
    b.add_argument("--eval-every", type=int, default=None,
                   help="validate every so many steps (default: one epoch's worth)")
    b.add_argument("--patience-steps", type=int, default=1600,
                   help="stop when validation NDCG@10 has not improved for so many steps")
    b.add_argument("--min-steps", type=int, default=3200,
                   help="stage 1: steps before the rule may stop a run")
    b.add_argument("--max-steps", type=int, default=32000, help="cap of every run")
    b.add_argument("--stage2-steps", type=int, default=1600,
                   help="B: the equal budget of every stage-2 sampler")
    b.add_argument("--stage2-min-steps", type=int, default=0,
                   help="stage 2: steps before the rule may stop a run")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--reg", type=float, default=1e-4)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--hns-candidates", type=int, default=8)
    p.add_argument("--min-rating", type=float, default=3.0)
    p.add_argument("--core", type=int, default=10)
    p.add_argument("--split-seed", type=int, default=2026)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader worker processes making the requests (default 1; --timing "
                        "compares 0, 1 and 2)")
    p.add_argument("--stage1-cache", default=None, metavar="DIR",
                   help="keep stage-1 models here and reuse them when the protocol is the same "
                        "(the sweep after the comparison)")
    p.add_argument("--icpnsd", default=os.path.join(ROOT, "build", "src", "daemon", "icpnsd"))
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "results.md"))
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "results.json"))
    p.add_argument("--quick", action="store_true", help="one seed, a few epochs: a smoke run")
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
    for name in ("patience_steps", "max_steps", "stage2_steps"):
        if getattr(args, name) < 1:
            p.error("--%s must be >= 1" % name.replace("_", "-"))
    if args.eval_every is not None and args.eval_every < 1:
        p.error("--eval-every must be >= 1")
    if args.workers < 0:
        p.error("--workers must be >= 0")
    if args.quick:
        args.seeds = args.seeds[:1]
    args.sweep_alphas = [float(a) for a in args.sweep_alphas.split(",") if a]
    args.sweep_ks = [int(k) for k in args.sweep_ks.split(",") if k]
    if args.report:
        R.render(args.json, args.timing_json, args.sweep_json, args.out)
        return 0
    if not os.access(args.icpnsd, os.X_OK):
        p.error("%s is not an executable icpnsd (build it: scripts/run.sh, or --icpnsd PATH)" % args.icpnsd)
    if not os.path.exists(args.data):
        print("two_stage: %s not found; skipping (MovieLens-100K is not shipped with the "
              "repository; point --data at u.data, a RecBole .inter or a train.txt/test.txt "
              "directory)" % args.data)
        return 0
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
