#!/usr/bin/python3
# scripts/emulate_attention_kernels.py — a numpy emulation of the warp-level logic of the bf16
# attention kernels (kernels/cuda/attention_fwd.cu, attention_bwd.cu): ldmatrix (.trans) and
# mma.sync m16n8k16 fragments per the PTX ISA, lane by lane, with the kernels' tile loops, masks
# and online softmax transcribed line by line. It checks the fragment/index math on a machine
# without a GPU (bf16 rounding included); it does not check races or the async copies.
# Keep it in step with the kernels when they change. Run: /usr/bin/python3 scripts/emulate_attention_kernels.py
import numpy as np

def bf(x):
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000
    return u.astype(np.uint32).view(np.float32)

def a_row(l): return l % 16
def a_col(l): return (l // 16) * 8
def b_row(l): return l % 8 + (l // 16) * 8
def b_col(l): return ((l // 8) % 2) * 8
bt_row, bt_col = a_row, a_col
at_row, at_col = b_row, b_col

def ldsm(arr, rows, cols, trans=False):
    """arr 2D; rows/cols: per-lane (32) row index and column start. Returns regs[32][4][2]."""
    regs = np.zeros((32, 4, 2), np.float32)
    for m in range(4):
        mat = np.stack([arr[rows[m * 8 + r], cols[m * 8 + r]:cols[m * 8 + r] + 8] for r in range(8)])
        for l in range(32):
            g, t = l // 4, l % 4
            if not trans:
                regs[l, m] = mat[g, 2 * t:2 * t + 2]
            else:
                regs[l, m] = [mat[2 * t, g], mat[2 * t + 1, g]]
    return regs

def mma(c, a, b0, b1):
    """c [32][4] float, a [32][4][2], b0,b1 [32][2] -> updated c."""
    A = np.zeros((16, 16)); B = np.zeros((16, 8)); C = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        A[g, 2*t:2*t+2] = a[l, 0]; A[g+8, 2*t:2*t+2] = a[l, 1]
        A[g, 2*t+8:2*t+10] = a[l, 2]; A[g+8, 2*t+8:2*t+10] = a[l, 3]
        B[2*t:2*t+2, g] = b0[l]; B[2*t+8:2*t+10, g] = b1[l]
        C[g, 2*t:2*t+2] = c[l, 0:2]; C[g+8, 2*t:2*t+2] = c[l, 2:4]
    Dm = A @ B + C
    out = np.zeros((32, 4), np.float32)
    for l in range(32):
        g, t = l // 4, l % 4
        out[l, 0:2] = Dm[g, 2*t:2*t+2]; out[l, 2:4] = Dm[g+8, 2*t:2*t+2]
    return out

def pack(lo, hi):  # per lane
    return np.stack([bf(lo), bf(hi)], axis=-1)

L = np.arange(32)
G, T4 = L // 4, L % 4

class Shape:
    def __init__(s, Tq, Tk, Dh, causal, window, scale):
        s.Tq, s.Tk, s.Dh, s.causal, s.window, s.scale = Tq, Tk, Dh, causal, window, scale
    def off(s): return s.Tk - s.Tq
    def kb(s, i):
        b = i + s.off() - s.window + 1
        return b if (s.causal and s.window > 0 and b > 0) else 0
    def ke(s, i): return i + s.off() + 1 if s.causal else s.Tk

def load_rows(src, row0, nrows_tile, n_rows, Dh, D):
    t = np.zeros((nrows_tile, D + 8), np.float32)
    for r in range(nrows_tile):
        if row0 + r < n_rows:
            t[r, :Dh] = src[row0 + r, :Dh]
    return t

def fwd(Q, K, V, s, D, NW):
    kBc, kBr = 64, 16 * NW
    Tq, Tk, Dh = s.Tq, s.Tk, s.Dh
    O = np.full((Tq, Dh), np.nan, np.float32); lse = np.full(Tq, np.nan, np.float32)
    sl2 = np.float32(s.scale * 1.4426950408889634)
    nqt = (Tq + kBr - 1) // kBr
    for by in range(nqt):
        i0 = (nqt - 1 - by) * kBr
        i_last = min(i0 + kBr, Tq) - 1
        t_first = s.kb(i0) // kBc
        n_tiles = (min(s.ke(i_last), Tk) + kBc - 1) // kBc - t_first
        sQ = load_rows(Q, i0, kBr, Tq, Dh, D)
        for w in range(NW):
            row = [i0 + w * 16 + G, i0 + w * 16 + G + 8]
            qf = [ldsm(sQ, w * 16 + a_row(L), kk * 16 + a_col(L)) for kk in range(D // 16)]
            o = [np.zeros((32, 4), np.float32) for _ in range(D // 8)]
            m = [np.full(32, -np.inf, np.float32), np.full(32, -np.inf, np.float32)]
            l = [np.zeros(32, np.float32), np.zeros(32, np.float32)]
            for it in range(n_tiles):
                j0 = (t_first + it) * kBc
                ks_ = load_rows(K, j0, kBc, Tk, Dh, D); vs_ = load_rows(V, j0, kBc, Tk, Dh, D)
                sc = [np.zeros((32, 4), np.float32) for _ in range(kBc // 8)]
                for kk in range(D // 16):
                    for np_ in range(kBc // 16):
                        b = ldsm(ks_, np_ * 16 + b_row(L), kk * 16 + b_col(L))
                        sc[2*np_] = mma(sc[2*np_], qf[kk], b[:, 0], b[:, 1])
                        sc[2*np_+1] = mma(sc[2*np_+1], qf[kk], b[:, 2], b[:, 3])
                full = j0 + kBc <= min(s.ke(i0), Tk) and j0 >= s.kb(i_last)
                for h in range(2):
                    for lane in range(32):
                        i = row[h][lane]
                        kb, ke = s.kb(i), min(s.ke(i), Tk)
                        for n in range(kBc // 8):
                            for e in range(2):
                                j = j0 + n * 8 + 2 * T4[lane] + e
                                x = sc[n][lane, 2*h+e]
                                sc[n][lane, 2*h+e] = x * sl2 if (full or (kb <= j < ke)) else -np.inf
                for h in range(2):
                    mx = m[h].copy()
                    for n in range(kBc // 8):
                        mx = np.maximum(mx, np.maximum(sc[n][:, 2*h], sc[n][:, 2*h+1]))
                    mx = np.maximum(mx, mx[L ^ 1]); mx = np.maximum(mx, mx[L ^ 2])
                    base = np.where(mx == -np.inf, 0, mx).astype(np.float32)
                    alpha = np.exp2(m[h] - base)
                    m[h] = mx
                    ssum = np.zeros(32, np.float32)
                    for n in range(kBc // 8):
                        sc[n][:, 2*h] = np.exp2(sc[n][:, 2*h] - base)
                        sc[n][:, 2*h+1] = np.exp2(sc[n][:, 2*h+1] - base)
                        ssum += sc[n][:, 2*h] + sc[n][:, 2*h+1]
                    l[h] = l[h] * alpha + ssum
                    for n in range(D // 8):
                        o[n][:, 2*h] *= alpha; o[n][:, 2*h+1] *= alpha
                for ks in range(kBc // 16):
                    pa = np.stack([pack(sc[2*ks][:, 0], sc[2*ks][:, 1]), pack(sc[2*ks][:, 2], sc[2*ks][:, 3]),
                                   pack(sc[2*ks+1][:, 0], sc[2*ks+1][:, 1]), pack(sc[2*ks+1][:, 2], sc[2*ks+1][:, 3])], axis=1)
                    for dp in range(D // 16):
                        b = ldsm(vs_, ks * 16 + bt_row(L), dp * 16 + bt_col(L), trans=True)
                        o[2*dp] = mma(o[2*dp], pa, b[:, 0], b[:, 1])
                        o[2*dp+1] = mma(o[2*dp+1], pa, b[:, 2], b[:, 3])
            for h in range(2):
                l[h] = l[h] + l[h][L ^ 1]; l[h] = l[h] + l[h][L ^ 2]
            stage = np.zeros((16, D + 8), np.float32)
            for n in range(D // 8):
                for lane in range(32):
                    g, t = lane // 4, lane % 4
                    stage[g, n*8+2*t:n*8+2*t+2] = bf(o[n][lane, 0:2] / l[0][lane])
                    stage[g+8, n*8+2*t:n*8+2*t+2] = bf(o[n][lane, 2:4] / l[1][lane])
            for r in range(16):
                i = i0 + w * 16 + r
                if i < Tq: O[i] = stage[r, :Dh]
            for lane in range(32):
                if T4[lane] == 0:
                    for h in range(2):
                        if row[h][lane] < Tq:
                            lse[row[h][lane]] = (m[h][lane] + np.log2(l[h][lane])) * np.log(2)
    return O, lse

def bwd(Q, K, V, Og, dO, lse, s, D, NW, BR):
    kBc, kBr = 16 * NW, BR
    Tq, Tk, Dh = s.Tq, s.Tk, s.Dh
    off = s.off()
    sl2 = np.float32(s.scale * 1.4426950408889634)
    delta = (dO.astype(np.float32) * Og.astype(np.float32)).sum(-1)
    dq_acc = np.zeros((Tq, Dh), np.float32)
    dK = np.full((Tk, Dh), np.nan, np.float32); dV = np.full((Tk, Dh), np.nan, np.float32)
    kParts = NW // (BR // 16); kDq = D // kParts
    for by in range((Tk + kBc - 1) // kBc):
        j0 = by * kBc; j_last = min(j0 + kBc, Tk) - 1
        i_lo = j0 - off if (s.causal and j0 - off > 0) else 0
        i_hi = min(Tq - 1, j_last + s.window - 1 - off) if (s.causal and s.window > 0) else Tq - 1
        qt_first = i_lo // kBr
        n_tiles = i_hi // kBr - qt_first + 1 if i_lo <= i_hi else 0
        sK = load_rows(K, j0, kBc, Tk, Dh, D); sV = load_rows(V, j0, kBc, Tk, Dh, D)
        dk = [[np.zeros((32, 4), np.float32) for _ in range(D // 8)] for w in range(NW)]
        dv = [[np.zeros((32, 4), np.float32) for _ in range(D // 8)] for w in range(NW)]
        for it in range(n_tiles):
            i0 = (qt_first + it) * kBr
            q_s = load_rows(Q, i0, kBr, Tq, Dh, D); do_s = load_rows(dO, i0, kBr, Tq, Dh, D)
            lse_s = np.array([lse[i0 + r] * 1.4426950408889634 if i0 + r < Tq else 0 for r in range(kBr)], np.float32)
            delta_s = np.array([delta[i0 + r] if i0 + r < Tq else 0 for r in range(kBr)], np.float32)
            sdS = np.zeros((kBc, kBr + 8), np.float32)
            full = i0 + kBr <= Tq and j0 + kBc <= Tk and j0 + kBc <= s.ke(i0) and j0 >= s.kb(i0 + kBr - 1)
            for w in range(NW):
                key = [j0 + w * 16 + G, j0 + w * 16 + G + 8]
                st = [np.zeros((32, 4), np.float32) for _ in range(kBr // 8)]
                for kk in range(D // 16):
                    ka = ldsm(sK, w * 16 + a_row(L), kk * 16 + a_col(L))
                    for np_ in range(kBr // 16):
                        b = ldsm(q_s, np_ * 16 + b_row(L), kk * 16 + b_col(L))
                        st[2*np_] = mma(st[2*np_], ka, b[:, 0], b[:, 1])
                        st[2*np_+1] = mma(st[2*np_+1], ka, b[:, 2], b[:, 3])
                for n in range(kBr // 8):
                    for e in range(2):
                        for lane in range(32):
                            c = n * 8 + 2 * T4[lane] + e; i = i0 + c
                            for h in range(2):
                                kj = key[h][lane]
                                ok = full or (i < Tq and kj < Tk and kj >= s.kb(i) and kj < s.ke(i))
                                st[n][lane, 2*h+e] = np.exp2(st[n][lane, 2*h+e] * sl2 - lse_s[c]) if ok else 0
                for ks in range(kBr // 16):
                    pa = np.stack([pack(st[2*ks][:, 0], st[2*ks][:, 1]), pack(st[2*ks][:, 2], st[2*ks][:, 3]),
                                   pack(st[2*ks+1][:, 0], st[2*ks+1][:, 1]), pack(st[2*ks+1][:, 2], st[2*ks+1][:, 3])], axis=1)
                    for dp in range(D // 16):
                        b = ldsm(do_s, ks * 16 + bt_row(L), dp * 16 + bt_col(L), trans=True)
                        dv[w][2*dp] = mma(dv[w][2*dp], pa, b[:, 0], b[:, 1])
                        dv[w][2*dp+1] = mma(dv[w][2*dp+1], pa, b[:, 2], b[:, 3])
                ds = [np.zeros((32, 4), np.float32) for _ in range(kBr // 8)]
                for kk in range(D // 16):
                    va = ldsm(sV, w * 16 + a_row(L), kk * 16 + a_col(L))
                    for np_ in range(kBr // 16):
                        b = ldsm(do_s, np_ * 16 + b_row(L), kk * 16 + b_col(L))
                        ds[2*np_] = mma(ds[2*np_], va, b[:, 0], b[:, 1])
                        ds[2*np_+1] = mma(ds[2*np_+1], va, b[:, 2], b[:, 3])
                for n in range(kBr // 8):
                    for e in range(2):
                        d_i = delta_s[n * 8 + 2 * T4 + e]
                        ds[n][:, e] = st[n][:, e] * (ds[n][:, e] - d_i)
                        ds[n][:, 2+e] = st[n][:, 2+e] * (ds[n][:, 2+e] - d_i)
                for n in range(kBr // 8):
                    for lane in range(32):
                        g, t = lane // 4, lane % 4
                        sdS[w*16+g, n*8+2*t:n*8+2*t+2] = bf(ds[n][lane, 0:2])
                        sdS[w*16+g+8, n*8+2*t:n*8+2*t+2] = bf(ds[n][lane, 2:4])
                for ks in range(kBr // 16):
                    da = np.stack([pack(ds[2*ks][:, 0], ds[2*ks][:, 1]), pack(ds[2*ks][:, 2], ds[2*ks][:, 3]),
                                   pack(ds[2*ks+1][:, 0], ds[2*ks+1][:, 1]), pack(ds[2*ks+1][:, 2], ds[2*ks+1][:, 3])], axis=1)
                    for dp in range(D // 16):
                        b = ldsm(q_s, ks * 16 + bt_row(L), dp * 16 + bt_col(L), trans=True)
                        dk[w][2*dp] = mma(dk[w][2*dp], da, b[:, 0], b[:, 1])
                        dk[w][2*dp+1] = mma(dk[w][2*dp+1], da, b[:, 2], b[:, 3])
            # __syncthreads; dQ
            for w in range(NW):
                qg = w % (kBr // 16); c0 = (w // (kBr // 16)) * kDq
                dq = [np.zeros((32, 4), np.float32) for _ in range(kDq // 8)]
                for ks in range(kBc // 16):
                    aa = ldsm(sdS, ks * 16 + at_row(L), qg * 16 + at_col(L), trans=True)
                    for dp in range(kDq // 16):
                        b = ldsm(sK, ks * 16 + bt_row(L), c0 + dp * 16 + bt_col(L), trans=True)
                        dq[2*dp] = mma(dq[2*dp], aa, b[:, 0], b[:, 1])
                        dq[2*dp+1] = mma(dq[2*dp+1], aa, b[:, 2], b[:, 3])
                for h in range(2):
                    for lane in range(32):
                        i = i0 + qg * 16 + G[lane] + 8 * h
                        if i >= Tq: continue
                        for n in range(kDq // 8):
                            d = c0 + n * 8 + 2 * T4[lane]
                            if d < Dh:
                                dq_acc[i, d] += dq[n][lane, 2*h] * s.scale
                                dq_acc[i, d+1] += dq[n][lane, 2*h+1] * s.scale
        for w in range(NW):
            for h in range(2):
                for lane in range(32):
                    kj = j0 + w * 16 + G[lane] + 8 * h
                    if kj >= Tk: continue
                    for n in range(D // 8):
                        d = n * 8 + 2 * T4[lane]
                        if d >= Dh: continue
                        dK[kj, d:d+2] = bf(dk[w][n][lane, 2*h:2*h+2] * s.scale)
                        dV[kj, d:d+2] = bf(dv[w][n][lane, 2*h:2*h+2])
    return bf(dq_acc), dK, dV

def ref(Q, K, V, dO, s):
    Q, K, V, dO = [x.astype(np.float64) for x in (Q, K, V, dO)]
    S = s.scale * Q @ K.T
    M = np.zeros_like(S, dtype=bool)
    for i in range(s.Tq):
        M[i, s.kb(i):min(s.ke(i), s.Tk)] = True
    S = np.where(M, S, -np.inf)
    mx = S.max(-1, keepdims=True)
    P = np.exp(S - mx); l = P.sum(-1, keepdims=True); P /= l
    O = P @ V
    lse = (mx + np.log(l))[:, 0]
    dV = P.T @ dO; dP = dO @ V.T
    dS = P * (dP - (dP * P).sum(-1, keepdims=True))
    dQ = s.scale * dS @ K; dK = s.scale * dS.T @ Q
    return O, lse, dQ, dK, dV

def relerr(a, r):
    if np.isnan(a).any(): return np.inf
    return np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-30)

def check(Tq, Tk, Dh, causal, window, D, NW, BNW, BR, seed=0):
    rng = np.random.default_rng(seed)
    Q = bf(2 * rng.standard_normal((Tq, Dh))); K = bf(rng.standard_normal((Tk, Dh)))
    V = bf(rng.standard_normal((Tk, Dh))); dO = bf(rng.standard_normal((Tq, Dh)))
    s = Shape(Tq, Tk, Dh, causal, window, 1 / np.sqrt(Dh))
    O, lse = fwd(Q, K, V, s, D, NW)
    Or, lser, dQr, dKr, dVr = ref(Q, K, V, dO, s)
    dq, dk, dv = bwd(Q, K, V, O, dO, lse, s, D, BNW, BR)
    errs = [relerr(O, Or), np.abs(lse - lser).max(), relerr(dq, dQr), relerr(dk, dKr), relerr(dv, dVr)]
    ok = errs[0] < 1e-2 and errs[1] < 1e-3 and all(e < 2e-2 for e in errs[2:])
    print(f"Tq {Tq} Tk {Tk} Dh {Dh} causal {causal} window {window} D {D} NW {NW}/{BNW} BR {BR}: "
          f"out {errs[0]:.2e} lse {errs[1]:.2e} dq {errs[2]:.2e} dk {errs[3]:.2e} dv {errs[4]:.2e} {'OK' if ok else 'FAIL'}")
    return ok

if __name__ == "__main__":
    allok = True
    allok &= check(37, 37, 64, True, 0, 64, 8, 8, 64)
    allok &= check(70, 70, 40, True, 7, 64, 8, 8, 64)
    allok &= check(5, 150, 64, True, 16, 64, 8, 8, 64)
    allok &= check(20, 33, 32, False, 0, 64, 8, 8, 64)
    allok &= check(66, 66, 96, True, 0, 96, 4, 4, 64)
    allok &= check(40, 70, 128, True, 20, 128, 4, 4, 32)
    print("ALL OK" if allok else "SOME FAILED")
    raise SystemExit(0 if allok else 1)
