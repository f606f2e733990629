// autograd/ops.h — every differentiable op. Each is defined in autograd/ops/<file>.cpp together
// with its backward (written with these same ops, so it can be taped: see node.h).
//
// Errors: shape, dtype and device mismatches throw std::invalid_argument naming the op and the
// shapes involved. Binary ops require equal dtypes (no silent promotion); use .to(dtype).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace ttt {

// --- elementwise binary, broadcasting (ops/binary.cpp) -----------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);   // gradient goes to a where a >= b
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);       // a > 0 where b's gradient is needed
// Comparisons (not differentiable): 1/0 in a's dtype.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);

// --- scalar ops (ops/scalar.cpp) ------------------------------------------------------------
Tensor add_scalar(const Tensor& x, double s);
Tensor mul_scalar(const Tensor& x, double s);
Tensor rsub_scalar(const Tensor& x, double s);      // s - x
Tensor scaled_sigmoid(const Tensor& x, double s);   // s · sigmoid(x), one kernel
Tensor pow_scalar(const Tensor& x, double p);       // x^p
Tensor div_scalar(const Tensor& x, double s);
Tensor rdiv_scalar(const Tensor& x, double s);      // s / x

// --- elementwise unary (ops/unary.cpp, ops/activation.cpp) -------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approx = true);
// First derivatives as differentiable ops (one fused kernel each; their backward is the second
// derivative built from primitives). Used by the activations' backward and by hand-derived
// inner-loop gradients (TTT-MLP dual form).
Tensor silu_grad(const Tensor& x);
Tensor gelu_tanh_grad(const Tensor& x);
Tensor gelu_erf_grad(const Tensor& x);

// SwiGLU's gate silu(a) ⊙ b as one fused op (ops/swiglu.cpp); broadcasting shapes fall back to
// the composite.
Tensor swiglu(const Tensor& a, const Tensor& b);
// SwiGLU's backward as a differentiable op (ops/swiglu_backward.cpp): {da, db} of swiglu(a, b) for the
// output gradient dy (same shapes), each only when wanted. swiglu records it under create_graph; its
// own backward is one fused kernel (kernels/swiglu_grad.h).
tensor_list swiglu_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool want_da, bool want_db);

// --- reductions (ops/reduce.cpp) --------------------------------------------------------------
// dims empty = all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor min(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // int64, not differentiable
// Sums x down to `shape` (the reverse of broadcasting); the backward of broadcasting ops.
Tensor sum_to(const Tensor& x, const Shape& shape);
Tensor cumsum(const Tensor& x, int64_t dim);

// --- linear algebra (ops/matmul.cpp) --------------------------------------------------------
// (..., m, k) @ (..., k, n) with batch broadcasting; 1-D operands as in numpy.
// Under autocast one operand may be bf16 and the other float32 (an activation kept in bf16 times a
// weight); the product is float32 then, and each gradient has its input's dtype.
Tensor matmul(const Tensor& a, const Tensor& b);
// matmul whose result, under autocast, is in the autocast dtype (bf16) rather than float32: for an
// activation that its consumers read in bf16 anyway. Outside autocast: matmul.
Tensor matmul_low_output(const Tensor& a, const Tensor& b);
// x Wᵀ (+ b) for x [..., in], W [out, in], b [out] or undefined (ops/multi_linear.cpp): a product
// (matmul) and the bias added in its dtype, as recorded ops; layers' Linear::forward on given
// weights (a checkpoint region passes its own stand-ins for a module's parameters). low_output:
// under autocast the result is in the autocast dtype (bf16) rather than float32
// (matmul_low_output), for an activation read in bf16 by what follows; x may be bf16 under
// autocast either way.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias, bool low_output = false);
// Products of one input with several weights (ops/multi_linear.cpp): y_i = x W_iᵀ (+ b_i) for x
// [..., in], W_i [n_i, in], b_i [n_i] or undefined (biases: one entry per weight), each equal to
// linear(x, W_i, b_i, low_output[i]). One node: its backward sums x's gradient inside the GEMMs
// (each adds into one buffer) instead of the engine adding one per product.
tensor_list multi_linear(const Tensor& x, const tensor_list& weights, const tensor_list& biases,
                         const std::vector<bool>& low_output);

// --- normalization, softmax, losses (one file each) ---------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Over the last dim; weight/bias optional (undefined Tensor).
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// {s, n} = {h + y, rms_norm(h + y, weight, eps)} in one pass (ops/add_rms_norm.cpp): a pre-norm
// block's residual add and the next norm. h, y: same shape and dtype; the gradients of h and y are
// one tensor. Equal to add + rms_norm (the same roundings and arithmetic).
tensor_list add_rms_norm(const Tensor& h, const Tensor& y, const Tensor& weight, double eps = 1e-6);
// RMSNorm's backward as a differentiable op (ops/rms_norm_backward.cpp): {dx, dw} of rms_norm(x, w,
// eps) for the output gradient dy, each only when wanted (dw needs w), else undefined. rms_norm and
// add_rms_norm record it under create_graph; its own backward is one fused kernel
// (kernels/rms_norm_grad.h). rstd (float32 [rows], the forward's) lets float32 / bfloat16 run the
// rms_norm_bwd kernel; without it the formulas run.
tensor_list rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& w, double eps, bool want_dx,
                              bool want_dw, const Tensor& rstd = Tensor());
// gelu_tanh(gate) · layer_norm(z, weight, bias, eps) in one pass (ops/gated_layer_norm.cpp: the TTT
// layer's gated output); z, gate: same shape and dtype; weight / bias optional.
Tensor gated_layer_norm(const Tensor& z, const Tensor& weight, const Tensor& bias, const Tensor& gate,
                        double eps = 1e-5);
// logits (..., V), targets (...) int64. Mean over targets != ignore_index ("mean") or "sum" or
// "none" (per-target losses, shape of targets).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100,
                     const std::string& reduction = "mean");
// Cross-entropy's backward as a differentiable op (ops/cross_entropy_backward.cpp): dx = w_i (softmax(x_i) −
// onehot(t_i)) per row of x [rows, classes], 0 for rows whose target is ignore_index; w [rows] the
// rows' loss gradients. cross_entropy records it under create_graph; its own backward is one fused
// kernel (kernels/cross_entropy_grad.h). lse (float32 [rows], the forward's) lets float32 /
// bfloat16 run the cross_entropy_bwd kernel.
Tensor cross_entropy_backward(const Tensor& x, const Tensor& w, const Tensor& targets, int64_t ignore_index,
                              const Tensor& lse = Tensor());
// cross_entropy(h Wᵀ, targets) without the logits (ops/linear_cross_entropy.cpp): h [..., d], W [V, d]
// (an LM head or tied embedding), reduction "mean" or "sum". Runs over chunks of chunk_rows rows
// (0: float32 logits of at most 256 MiB per chunk) and computes the gradients during the forward.
Tensor linear_cross_entropy(const Tensor& h, const Tensor& weight, const Tensor& targets, int64_t ignore_index = -100,
                            const std::string& reduction = "mean", int64_t chunk_rows = 0);

// --- attention (ops/attention.cpp) -------------------------------------------------------------
// softmax(scale · q kᵀ + mask) v for q [B,H,Tq,D], k, v [B,H,Tk,D] -> [B,H,Tq,D], fused (the
// [Tq, Tk] scores are never stored). The queries are the LAST Tq positions of the keys (query
// row i is at position i + Tk − Tq), so Tq < Tk decodes new tokens against a KV cache.
// causal: row i sees key j iff j <= pos(i) and, with window > 0, pos(i) − window < j; not causal:
// every key (window must be 0). Typical scale: 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, int64_t window,
                                    double scale);

// One decoded token against a KV cache in one call (ops/attention_decode.cpp; math in
// kernels/attention_decode.h): RoPE (θ = theta, adjacent pairs) of q, k [B, 1, H, D] at the position
// counters[0], k and v appended to the cache K, V [B, H, capacity, D] at counters[1], softmax(scale q Kᵀ) V
// over the last `window` entries (0: all), counters advanced by one; returns [B, 1, H, D]. The
// counters (int64 [2], on the cache's device) are read on the device: a CUDA graph of the call
// replays for every position. Not differentiable.
Tensor attention_decode_step(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& k_cache,
                             const Tensor& v_cache, const Tensor& counters, int64_t window, double scale, double theta);
// Why attention_decode_step has no kernel for this device, head_dim and cache dtype (empty when it has).
std::string attention_decode_step_unsupported(Device device, int64_t head_dim, DType dtype);

// --- the fused TTT-Linear scan (ops/ttt_linear_scan.cpp; math in kernels/ttt_linear_scan.h) ------
struct TTTScanOptions {
  int64_t checkpoint_group = 0;  // chunks per stored state (0 or 1: every chunk)
  double eps = 1e-6;             // the inner LayerNorm's eps
  int64_t cluster = 1;           // TTT-MLP on a GPU: blocks sharing a head (TTTMLPScanShape::cluster)
  bool split_walk = false;       // TTT-MLP on a GPU: the split backward (TTTMLPScanShape::split_walk)
};
// The same function written with differentiable ops, from the inputs in the op's order
// (XQ, XK, XV, lr, tok, W0, b0, ln_w, ln_b; undefined where absent): used for create_graph.
using TTTScanComposite = std::function<Tensor(const tensor_list& inputs)>;
// Returns {out [B, H, T, f], W_T [B, H, f, f], b_T [B, H, f], accW, accb}; only out is
// differentiable. K = tok.size(0); b0 undefined = no inner bias; ln_w/ln_b undefined = no LN +
// residual. W0 [B, H, f, f] with b0 [B, H, f] (or undefined): a state per sequence, for decoding
// from a mini-batch boundary; forward only (throws if an input requires grad). One dtype throughout, or XQ, XK, XV (and so out) bf16 with float32 others: the
// autocast layer's projections go in without a cast. Throws where the device has no kernel for
// the call (see the query below).
tensor_list ttt_linear_scan(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tok,
                            const Tensor& w0, const Tensor& b0, const Tensor& ln_w, const Tensor& ln_b,
                            const TTTScanOptions& o, const TTTScanComposite& composite);
// Several ttt_linear_scan calls (each its 9 inputs, with its options), forward only (grad mode
// off): on a GPU as one launch per pass (kernels/ttt_linear_scan.h TTTLinearScanForwardGroup), which
// a wavefront prefill uses for the scans of a wave. Returns each call's five outputs, as
// ttt_linear_scan's.
std::vector<tensor_list> ttt_linear_scan_group(const std::vector<tensor_list>& calls,
                                               const std::vector<TTTScanOptions>& options);
// Why ttt_linear_scan cannot run these inputs on their device (autocast included); empty when it can.
std::string ttt_linear_scan_unsupported(const Tensor& xq, const Tensor& tok, const Tensor& b0, const Tensor& ln_w,
                                        const TTTScanOptions& o);

// One decoded token of TTT-Linear in primal form as one kernel (ops/ttt_linear_decode.cpp; math in
// kernels/ttt_linear_decode.h): xq, xk, xv [B, H, 1, f], lr [B, H, 1], tok [1] (the position's token
// factor), the state W [B, H, f, f], b [B, H, 1, f] of the open mini-batch's start, its accumulators
// accW, accb (undefined = zero) and ln_w, ln_b [H, f] (undefined = no LN + residual); one dtype.
// Returns {out [B, H, 1, f], the accumulators with this token} or with `commit` {out, the next state
// W, b}. Not differentiable (decoding: grad mode off or no input needing grad).
tensor_list ttt_linear_decode_step(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr,
                                   const Tensor& tok, const Tensor& w, const Tensor& b, const Tensor& acc_w,
                                   const Tensor& acc_b, const Tensor& ln_w, const Tensor& ln_b, double eps, bool commit);
// Why ttt_linear_decode_step has no kernel for xq's device and dtype at this head_dim (empty when it has).
std::string ttt_linear_decode_step_unsupported(const Tensor& xq, int64_t head_dim);

// One decoded token of TTT-MLP in primal form as one kernel (ops/ttt_mlp_decode.cpp; math in
// kernels/ttt_mlp_decode.h): inputs as ttt_linear_decode_step's with the state w = {W1 [B, H, f, h],
// b1 [B, H, 1, h], W2 [B, H, h, f], b2 [B, H, 1, f]} (biases undefined: none) and its accumulators acc
// (all undefined = zero). Returns {out [B, H, 1, f], the four accumulators with this token} or with
// `commit` {out, the next state}. Not differentiable.
tensor_list ttt_mlp_decode_step(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr,
                                const Tensor& tok, const tensor_list& w, const tensor_list& acc, const Tensor& ln_w,
                                const Tensor& ln_b, double eps, bool commit);
// Why ttt_mlp_decode_step has no kernel for xq's device and dtype at this head_dim and hidden size.
std::string ttt_mlp_decode_step_unsupported(const Tensor& xq, int64_t head_dim, int64_t hidden);

// --- the fused TTT-MLP scan (ops/ttt_mlp_scan.cpp; math in kernels/ttt_mlp_scan.h) ---------------
// Inputs as ttt_linear_scan's with the two-layer state W1 [H, f, h], b1 [H, h], W2 [H, h, f],
// b2 [H, f] (b1, b2 both undefined: no inner biases); one dtype throughout (float32 or float64),
// except that XQ, XK, XV may be bf16 with float32 others (kept as bf16; out is then bf16).
// Returns {out [B, H, T, f], W1_T [B, H, f, h], b1_T [B, H, h], W2_T [B, H, h, f], b2_T [B, H, f],
// and the accumulators of a partial last chunk in the same four shapes (0 when T % K == 0)}; only
// out is differentiable. composite: the same function from the inputs in this order (XQ, XK, XV,
// lr, tok, W1, b1, W2, b2, ln_w, ln_b), used for create_graph. Throws where the device has no
// kernel (the query below says why).
tensor_list ttt_mlp_scan(const Tensor& xq, const Tensor& xk, const Tensor& xv, const Tensor& lr, const Tensor& tok,
                         const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2, const Tensor& ln_w,
                         const Tensor& ln_b, const TTTScanOptions& o, const TTTScanComposite& composite);
// Why ttt_mlp_scan cannot run XQ (on its device and shape) with the other inputs of dtype `dtype`,
// mini-batch K, hidden size h, inner biases and LN + residual as given; empty when it can. Needs no
// other tensor, so a layer can ask before building the op's inputs.
std::string ttt_mlp_scan_unsupported(const Tensor& xq, DType dtype, int64_t mini_batch, int64_t hidden, bool bias,
                                     bool ln, const TTTScanOptions& o);

// --- depthwise causal convolution (ops/causal_conv.cpp; math in kernels/causal_conv.h) ----------
// y[b, t, c] = bias[c] + Σ_j w[c, j] x[b, t − (k−1) + j, c] for x [B, T, C], w [C, k], bias [C] or
// undefined (x before t = 0 is 0): the Mamba backbone's short convolutions, fused.
Tensor causal_conv1d(const Tensor& x, const Tensor& w, const Tensor& bias);
// Decoding: x [B, T, C] continuing after `history` (the k−1 inputs before it, [B, k−1, C]) in one
// kernel; returns {y [B, T, C], the last k−1 inputs of (history, x)}. Not differentiable (grad mode
// off, or no input requiring grad). A float32 history with bfloat16 x (a decoder's tails through a
// bf16 prompt) is read rounded to bf16 and the new history returned as float32: the results of
// casting it to bf16 and back around the call.
tensor_list causal_conv1d_continue(const Tensor& x, const Tensor& history, const Tensor& w, const Tensor& bias);
// The same composed of differentiable ops (cat, causal_conv1d, narrow): for steps autograd sees
// through, and where the kernel does not run.
tensor_list causal_conv1d_continue_composite(const Tensor& x, const Tensor& history, const Tensor& w,
                                             const Tensor& bias);

// --- SSD scan of Mamba 2 (ops/ssd_scan.cpp) --------------------------------------------------------
// Per batch and head h (B, C from group g = h / (H/G)): H_t = exp(dt_t A_h) H_{t−1} + dt_t x_t B_tᵀ,
// y_t = H_t C_t, H_{−1} = h0 (zeros when undefined). x [B,T,H,P], dt [B,T,H], A [H], Bm, Cm [B,T,G,N],
// h0 [B,H,P,N] -> {y [B,T,H,P], H_T [B,H,P,N]}. One node over the fused kernels (kernels/ssd.h)
// when `fused` and the backend supports the shape and dtype, else the chunked composite (chunk tokens
// per block); both give the same values, gradients of any order through the composite.
tensor_list ssd_scan(const Tensor& x, const Tensor& dt, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                     const Tensor& h0, int64_t chunk, bool fused = true);
// The chunked composite ssd_scan falls back to, on heads-first tensors with the input already scaled
// and the log-decay given per token: H_t = e^{a_t} H_{t−1} + x̄_t b_tᵀ, y_t = H_t c_t. xbar [B,H,T,P],
// a [B,H,T], b, c [B,H,T,N], h0 [B,H,P,N] (undefined: zeros) -> {y [B,H,T,P], H_T [B,H,P,N]}; chunks
// of `chunk` tokens, differentiable ops (any order). Other recurrences of this shape build on it
// (layers/ssd.h gated_linear_chunked).
tensor_list ssd_composite(const Tensor& xbar, const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& h0,
                          int64_t chunk);
// [B, T, G, d] -> [B, T, H, d]: head h reads group h / (H / G) (H a multiple of G), a view; t itself
// when G = H. (SSD's B and C, and the q/k groups of the gated delta rule, per head.)
Tensor expand_groups(const Tensor& t, int64_t heads);

// --- gated delta rule of Gated DeltaNet (ops/gated_delta_scan.cpp; math in kernels/gated_delta.h) -
// Per batch and head, state M = Sᵀ [d_k, d_v]: M_t = e^{g_t} (I − β_t k_t k_tᵀ) M_{t−1} + β_t k_t v_tᵀ,
// o_t = M_tᵀ q_t, M_{−1} = M0 (zeros when undefined). q, k [B,T,G,d_k] (G dividing H; head h reads
// q/k head h / (H/G)), v [B,T,H,d_v], g, beta [B,T,H], M0 [B,H,d_k,d_v] -> {o [B,T,H,d_v], M_T [B,H,d_k,d_v]}. One node over the fused kernels when `fused`
// and the device covers the shape (the backward keeps the state every `chunk` tokens); otherwise,
// and for gradients of gradients, `composite` (the same function written with differentiable ops,
// from the inputs in this order, returning {o, M_T}). With erase = false the recurrence has no erase
// term, M_t = e^{g_t} M_{t−1} + β_t k_t v_tᵀ (Mamba 2's SSD with k = B, q = C, v = x, β = Δ, g = ΔA).
// `form` picks the CUDA kernels: the token walk, or the chunked WY kernels (GatedDeltaShape::chunked)
// with their products on the CUDA cores or on the tensor cores (3xTF32; ::tensor_cores).
enum class DeltaForm { walk, chunked, chunked_tc };
using GatedDeltaComposite = std::function<tensor_list(const tensor_list& inputs)>;
tensor_list gated_delta_scan(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                             const Tensor& M0, int64_t chunk, const GatedDeltaComposite& composite, bool fused = true,
                             bool erase = true, DeltaForm form = DeltaForm::walk);
// Why the fused kernels cannot run q [B,T,G,d_k], v [B,T,H,d_v] on q's device; empty when they can.
std::string gated_delta_scan_unsupported(const Tensor& q, const Tensor& v, int64_t chunk,
                                        DeltaForm form = DeltaForm::walk);

// --- selective scan of Mamba-1 (ops/selective_scan.cpp; math in kernels/selective_scan.h) --------
// Per batch, channel d and state n: Δ_t = softplus(δ_t + bias), h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t u_t,
// y_t = Σ_n C_t h_t + D u_t (h_{−1} = 0). u, delta [B,T,D], A [D,N], Bm, Cm [B,T,N], D, bias [D], one
// dtype -> y [B,T,D]. One node over the fused kernels (kernels/selective_scan.h) when `fused` and
// the device supports the shape; otherwise, and for gradients of gradients, `composite` (the same
// function written with differentiable ops, from the inputs in this order).
using SelectiveScanComposite = std::function<Tensor(const tensor_list& inputs)>;
// Forward only (decoding, prefill; nothing may require grad, and the fused kernels must cover the
// call): from h0 [B,D,N] (undefined: zeros), and with h_final set to the state after the last step.
Tensor mamba_selective_scan(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bm, const Tensor& Cm,
                            const Tensor& D, const Tensor& bias, const SelectiveScanComposite& composite,
                            bool fused = true, const Tensor& h0 = Tensor(), Tensor* h_final = nullptr);
// Why the fused kernels cannot run u [B,T,D], A [D,N] on u's device; empty when they can.
std::string mamba_selective_scan_unsupported(const Tensor& u, const Tensor& A);

// --- rotary position embedding (ops/rope.cpp) ------------------------------------------------
// Rotates the interleaved pairs (x[2i], x[2i+1]) of x's last dim by the angles of the constant
// tables cos, sin [T, d/2] (float64 for float64 x, float32 otherwise), row t for index t of
// `time_dim`; inverse rotates by the negative angles (the backward). Output: x's shape and dtype,
// contiguous, or with keep_layout in x's memory layout when x is a dense permuted view (a
// [B, T, H, D] projection seen as [B, H, T, D] stays heads-last, as the attention kernels read it).
// layers/rope.h builds the tables from positions and theta.
Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin, int64_t time_dim, bool inverse = false,
            bool keep_layout = false);

// --- indexing and structure (one file each) -------------------------------------------------
Tensor embedding(const Tensor& weight, const Tensor& ids);  // weight[V, D], ids any shape
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor cat(const tensor_list& xs, int64_t dim);
Tensor stack(const tensor_list& xs, int64_t dim);
tensor_list split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
tensor_list chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // broadcasting
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);
Tensor tril(const Tensor& x, int64_t diagonal = 0);
Tensor triu(const Tensor& x, int64_t diagonal = 0);
// Zeros with `size` along dim (src's shape elsewhere), src's slices added at `index` (1-D):
// the backward of index_select and embedding (its own backward is index_select).
Tensor index_add_zeros(const Tensor& src, int64_t dim, const Tensor& index, int64_t size);
// Zeros of `shape` with x written at [start, start+len) along dim: the backward of narrow.
Tensor narrow_scatter(const Tensor& x, const Shape& shape, int64_t dim, int64_t start);

// --- views and copies (ops/view.cpp, ops/copy.cpp) -----------------------------------------------
Tensor reshape(const Tensor& x, const Shape& s);
Tensor permute(const Tensor& x, const std::vector<int>& dims);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor expand(const Tensor& x, const Shape& s);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType d);    // differentiable cast
Tensor to_device(const Tensor& x, Device d);  // differentiable transfer

// --- operators -----------------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub_scalar(a, s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return div_scalar(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv_scalar(a, s); }

}  // namespace ttt
