"""The kit's diagnosis: when a quantity mismatches, recompute what each known mistake would have
produced from the adapter's *own* outputs (its routing, eval routing, load and saved biases, all
recorded by kit.py's Run) and name the mistakes that reproduce what the adapter did. Each entry is
(name, message); tests/check_conformance.sh requires the name of every planted bug.

The candidates use lfmoe's rules from docs/FORMAT.md (kit.lfmoe_update, kit.lfmoe_gates) with one
thing changed each: the place of the update, its centring, the counts it is fed, the dtype it is
stored in, the scores the gates come from.
"""
import torch

from kit import GATE_RTOL, bf16_exact, bias_close, lfmoe_gates, lfmoe_update


def counts_of(e, E):
    return torch.bincount(e.reshape(-1), minlength=E)


def topk_sets(keys, K):
    """Each row's K largest keys, ties to the lower index (lfmoe's rule), as sorted index rows."""
    order = torch.sort(-keys, dim=1, stable=True).indices[:, :K]
    return order.sort(1).values


def diagnose(run):
    d, rec, out = run.d, run.rec, []
    E, cfg = d.E, d.cfg
    steps = [s for s in range(d.steps) if s in rec]

    def own(s, l, m=None):
        ms = range(d.G) if m is None else [m]
        return sum(counts_of(rec[s]['train'][(mm, l)], E) for mm in ms)

    def evc(s, l):
        e = rec[s]['eval'].get(l)
        return None if e is None else counts_of(e, E)

    def prev_saved(s, l):
        return rec[s - 1]['saved'][l] if s > 0 else d.init_bias(l)

    # ---------------- load: the first step/layer whose load is not the adapter's own training counts
    q = run.q
    load_bad = [(s, l) for s in steps for l in d.layers if rec[s]['load'].get(l) is not None and
                not torch.equal(rec[s]['load'][l].double(), own(s, l).double())]
    if load_bad:
        s, l = load_bad[0]
        got, c, ev = rec[s]['load'][l].double(), own(s, l).double(), evc(s, l)
        last = own(s, l, d.G - 1).double()
        if torch.equal(got, 2 * c):
            out.append(('recompute-counted', f'at step {s} layer {l} the load is exactly twice the counts of the '
                        'training forwards: the recompute forward of activation checkpointing is counted as load. Count '
                        'only forwards with grad enabled (Megatron-Core: torch.is_grad_enabled()) or halve the load when '
                        'blocks are recomputed (torchtitan: tokens_per_expert_E // 2)'))
        elif ev is not None and (torch.equal(got, c + ev.double()) or  # counted once, or in both passes, halved
                                 torch.equal(got, torch.div(2 * c + ev.double(), 2, rounding_mode='floor'))):
            out.append(('eval-counted', f'at step {s} layer {l} the load is the training counts plus the evaluation '
                        f'forward\'s ({int(ev.sum())} assignments): evaluation is counted as load. Count only in training '
                        'mode (model.eval() before evaluating, or check module.training / torch.is_grad_enabled())'))
        elif d.G > 1 and (torch.equal(got, torch.zeros_like(got)) or torch.equal(got, last)):
            out.append(('update-every-micro-batch', f'at step {s} layer {l} the load just before the optimizer step '
                        f'holds {"nothing" if got.sum() == 0 else "only the last micro-batch"} of the {d.G} micro-batches: '
                        'the load was consumed (and the bias updated) after every micro-batch. Update once per optimizer '
                        'step, from the load of all its micro-batches (Megatron: finalize_model_grads; torchtitan: the '
                        'optimizer step pre-hook)'))
        elif bf16_exact(got) and not bf16_exact(c):
            out.append(('counts-bf16', f'at step {s} layer {l} the load {got.long().tolist()} is the training counts '
                        f'{c.long().tolist()} rounded to bf16: accumulate the load in an integer (or fp64) buffer'))
        else:
            out.append(('load-unexplained', f'at step {s} layer {l} the load {got.tolist()} is none of: the training '
                        f'counts {c.long().tolist()}, twice them, them plus the evaluation forward, one micro-batch'))

    # ---------------- large counts
    info = getattr(run, 'large_info', None)
    if info and info['first_bad']:
        calls, i, g, w = info['first_bad']
        if w <= (1 << 24):
            kind = 'bf16' if bf16_exact(torch.tensor([g])) else 'a float narrower than fp32'
            out.append(('counts-bf16', f'the load of expert {i} reads {g:.10g} where exactly {w} assignments were '
                        f'counted (at or below 2^24): it is accumulated in {kind}, exact only up to 256. Use int64'))
        else:
            out.append(('counts-fp32', f'the load of expert {i} reads {g:.10g} where exactly {w} assignments were '
                        'counted: past 2^24 = 16,777,216 an fp32 accumulator drops the low bits (Megatron-Core\'s '
                        'local_tokens_per_expert and torchtitan\'s tokens_per_expert_E are fp32). Exact below 2^24 '
                        'assignments per expert per step; use int64 (or fp64) for larger global batches'))

    # ---------------- gates: the first mismatching token
    gate_bad = None
    for s in steps:
        for m in range(d.G):
            for l in d.layers:
                g = rec[s]['gates'].get((m, l))
                if g is None:
                    continue
                e = rec[s]['train'][(m, l)]
                ref_e, ref_g = d.experts(s, m, l), d.gates(s, m, l)
                same = (e.sort(1).values == ref_e.sort(1).values).all(1)
                ga = g.double().gather(1, e.argsort(1))
                gr = ref_g.double().gather(1, ref_e.argsort(1))
                bad = same & ~((ga - gr).abs() <= GATE_RTOL * gr.abs().amax(1, keepdim=True)).all(1)
                if bad.any() and gate_bad is None:
                    gate_bad = (s, m, l, e, g)
    if gate_bad:
        s, m, l, e, g = gate_bad
        sc = d.scores(s, m, l).double()
        b = d.step_bias(s, l).double()

        def close(cand):
            return bool(((g.double() - cand).abs() <= GATE_RTOL * cand.abs().amax(1, keepdim=True)).all())

        if close(lfmoe_gates((sc + b).gather(1, e), cfg)):
            out.append(('bias-in-gates', f'from step {s} (layer {l}, micro-batch {m}) the gates equal the formula '
                        'applied to the biased scores s + b: the bias leaks into the gate weights. Gather the gates '
                        'from the plain scores; the bias only chooses the experts'))
        elif close(lfmoe_gates(sc.gather(1, e), dict(cfg, norm_topk=not cfg.get('norm_topk')))):
            out.append(('gate-renormalisation', f'at step {s} layer {l} the gates are {"not " if cfg.get("norm_topk") else ""}'
                        f'divided by their sum, the dump\'s are{"" if cfg.get("norm_topk") else " not"} '
                        '(lfmoe --norm-topk; Megatron always renormalises sigmoid top-k > 1; torchtitan route_norm; '
                        'HF norm_topk_prob)'))
        elif close(lfmoe_gates(sc.gather(1, e), dict(cfg, route_scale=1.0))) and cfg['route_scale'] != 1.0:
            out.append(('gate-scale', f'at step {s} layer {l} the gates lack the route scale {cfg["route_scale"]:g} '
                        '(lfmoe --route-scale; Megatron --moe-router-topk-scaling-factor; torchtitan route_scale; HF '
                        'routed_scaling_factor)'))

    # ---------------- bias
    bias_bad = [(s, l) for s in steps for l in d.layers if l in rec[s]['saved'] and (s, l) not in run.bias_near_ties and
                not bias_close(rec[s]['saved'][l], d.bias_after(s, l), cfg['bias_rate']).all()]
    if bias_bad:
        s, l = bias_bad[0]
        got, prev, c = rec[s]['saved'][l].float(), prev_saved(s, l).float(), own(s, l)

        def matches(cand):
            return bool(bias_close(got, cand, cfg['bias_rate']).all())

        init_always = all(torch.equal(rec[t]['saved'][l].float(), d.init_bias(l).float()) for t in steps)
        dump_moves = not torch.equal(d.bias_after(d.steps - 1, l), d.init_bias(l))
        if bf16_exact(got) and not bf16_exact(d.bias_after(s, l)) and not init_always:
            out.append(('bias-bf16', f'after step {s} (layer {l}) every value of the saved bias is a bf16 number '
                        f'({got[:4].tolist()}...) while lfmoe\'s fp32 bias is not: the bias is kept in bf16. Keep it in '
                        'fp32 (HF: after model.to(bfloat16), cast e_score_correction_bias back to float32)'))
        elif init_always and dump_moves:
            out.append(stale_bias(run, l))
        elif d.G > 1 and matches(per_micro_batch(prev, [own(s, l, m) for m in range(d.G)], cfg)):
            out.append(('update-every-micro-batch', f'after step {s} (layer {l}) the bias equals {d.G} updates, one per '
                        'micro-batch from that micro-batch\'s load: update once per optimizer step'))
        elif not cfg['bias_center'] and matches(lfmoe_update(prev, c, cfg, center=True)):
            out.append(('update-centred', f'after step {s} (layer {l}) the bias equals the centred update '
                        '(delta - mean(delta), torchtitan\'s) but the dump\'s run does not centre: drop the centring, or '
                        'make the dump with --bias-center if the centred update is what you want'))
        elif cfg['bias_center'] and matches(lfmoe_update(prev, c, cfg, center=False)):
            out.append(('update-not-centred', f'after step {s} (layer {l}) the bias equals the uncentred sign update '
                        'but the dump\'s run centres it (--bias-center, torchtitan): subtract mean(delta)'))
        elif evc(s, l) is not None and matches(lfmoe_update(prev, c + evc(s, l), cfg)):
            out.append(('eval-counted', f'after step {s} (layer {l}) the bias equals the update from the load plus '
                        'the evaluation forward: evaluation is counted as load'))
        elif not any(n == 'update-every-micro-batch' for n, _ in out):
            out.append(('bias-unexplained', f'after step {s} (layer {l}) the bias {got.tolist()} is none of the known '
                        f'mistakes (lfmoe: {d.bias_after(s, l).tolist()}, before the step {prev.tolist()})'))

    # ---------------- routing from scores rounded to bf16 (DeepSeek-V3's inference Gate runs sigmoid
    # in the activation dtype)
    if q['routing'].n['mismatch'] and d.has_logits():
        first = next(((s, m, l) for s in steps for m in range(d.G) for l in d.layers
                      if (m, l) in rec[s]['train'] and
                      not torch.equal(rec[s]['train'][(m, l)].sort(1).values, d.experts(s, m, l).sort(1).values)),
                     None)
        if first:
            s, m, l = first
            sc = d.scores(s, m, l).to(torch.bfloat16).double()
            b = d.step_bias(s, l).double() if d.has_bias() else torch.zeros(E, dtype=torch.float64)
            mine = rec[s]['train'][(m, l)].sort(1).values
            # the bf16 keys tie often: accept the adapter's set wherever it is a top-K of those keys
            k = sc + b if cfg.get('bias_kind', 'add') == 'add' else sc * b
            kth = k.sort(1, descending=True).values[:, d.K - 1:d.K]
            picked = k.gather(1, mine)
            if bool((picked >= kth).all()):
                out.append(('scores-bf16', f'at step {s} (layer {l}, micro-batch {m}) the adapter\'s experts are a top-k of '
                            'the scores rounded to bf16 (plus the bias), not of the fp32 scores: the score function runs '
                            'in bf16 (DeepSeek-V3 inference: sigmoid in the activation dtype). Compute scores in fp32'))

    # ---------------- routing mismatches not explained by the bias
    if q['routing'].n['mismatch'] and not any(n in ('bias-never-updated', 'out-of-place-update', 'bias-bf16',
                                                     'update-every-micro-batch') for n, _ in out):
        for s in steps:
            m, l = 0, d.layers[0]
            if (m, l) not in rec[s]['train'] or not d.has_bias():
                continue
            e = rec[s]['train'][(m, l)].sort(1).values
            if torch.equal(e, topk_sets(d.scores(s, m, l).double(), d.K)) and \
                    not torch.equal(e, d.experts(s, m, l).sort(1).values):
                out.append(('bias-not-in-selection', f'at step {s} the adapter\'s experts are the top-k of the plain '
                            'scores: the bias is not added to the selection key'))
                break
    return dedupe(out)


def per_micro_batch(b, counts, cfg):
    for c in counts:
        b = lfmoe_update(b, c, cfg)
    return b


def stale_bias(run, l):
    """The saved bias never changed. If the adapter's routing still follows the dump's (updated) bias,
    routing uses a tensor that is not the saved one (out of place); if it follows the initial bias,
    the update never ran."""
    d, rec = run.d, run.rec
    follows_dump = follows_init = 0
    for s in range(1, d.steps):
        if s not in rec or (0, l) not in rec[s]['train'] or not d.has_logits():
            continue
        for m in range(d.G):
            mine = rec[s]['train'][(m, l)].sort(1).values
            sc = d.scores(s, m, l).double()
            init_sets = topk_sets(sc + d.init_bias(l).double(), d.K)
            dump_sets = d.experts(s, m, l).sort(1).values
            differ = (init_sets != dump_sets).any(1)       # tokens where the two biases route differently
            follows_dump += int(((mine == dump_sets).all(1) & differ).sum())
            follows_init += int(((mine == init_sets).all(1) & differ).sum())
    if follows_dump and not follows_init:
        return ('out-of-place-update', f'the saved bias of layer {l} never leaves its initial value, yet routing '
                f'follows the updated bias ({follows_dump} tokens route as with lfmoe\'s updated bias, none as with the '
                'initial one): the update is out of place (bias = bias + delta rebinds a new tensor); the registered '
                'buffer that checkpoints save is never written. Update in place (bias.add_(delta) / copy_)')
    if follows_init and not follows_dump:
        return ('bias-never-updated', f'the bias of layer {l} never changes and routing follows the initial bias '
                f'({follows_init} tokens route as with it where lfmoe\'s updated bias routes them elsewhere): the update '
                'never runs (router not in training mode at the optimizer step, a frozen bias, a hook never registered)')
    return ('bias-never-updated', f'the saved bias of layer {l} never changes while lfmoe\'s does: the update never '
            'runs, or runs out of place on a tensor that is not saved' +
            ('' if d.has_logits() else ' (a version 1 dump cannot tell the two apart: routing is not re-run)'))


def dedupe(out):
    seen, res = set(), []
    for n, t in out:
        if n not in seen:
            seen.add(n)
            res.append((n, t))
    return res
