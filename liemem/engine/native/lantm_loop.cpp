// The engine's kernels for the CPU: the time loop of the append-only memory models, built on first use by
// torch.utils.cpp_extension (see liemem/engine/native/__init__.py).
//
// At the paper's sizes (batch 32, 50 cells, 20-wide memory, a few dozen slots) a time step is some forty tensor
// operations of a few microseconds each, and that fixed cost per operation is most of a training step. These
// kernels do a step's work in plain loops over raw rows of preallocated buffers, one call per phase: the matrix
// products go straight to the BLAS torch links, and only the LSTM's activations run on ATen's vectorised
// functions. They compute what liemem/engine/tensor_ops.py (the Lie-access read) and liemem/engine/content.py
// (the content read of RAM and RAM/tape) compute with tensor operations, up to rounding, and tests compare them.
// A group's head movement stays in Python, the part a user writes, but for the moves built in here.
//
// Layouts: the memory keeps slots along its last axis, keys [B, d, S], values [B, m, S] and strengths [B, 1, S],
// so that the loops over slots run over contiguous memory; row t of a [T, ...] buffer belongs to time step t.

#include <pybind11/stl.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

// The BLAS that torch links (MKL or OpenBLAS export these Fortran symbols); weak, so that a torch without them
// still loads this module, which then falls back to ATen's matrix product.
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc)
    __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

// Row-major C[m, n] (row stride ldc) = A[m, k] (row stride lda) times B, plus C if `accumulate`. B is [k, n]
// (row stride ldb), or, if `b_transposed`, [n, k], used as its transpose. Called on raw rows of the loop's
// buffers, so that a step's products cost no tensor views and no dispatch.
template <typename T>
void matmul(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb, bool b_transposed, T* c,
            int64_t ldc, bool accumulate) {
  const T one = 1, beta = accumulate ? T(1) : T(0);
  // Column-major BLAS sees each row-major matrix as its transpose: C^T = op(B)^T A^T.
  const int mm = static_cast<int>(n), nn = static_cast<int>(m), kk = static_cast<int>(k);
  const int la = static_cast<int>(ldb), lb = static_cast<int>(lda), lc = static_cast<int>(ldc);
  const char transa = b_transposed ? 'T' : 'N', transb = 'N';
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr) return sgemm_(&transa, &transb, &mm, &nn, &kk, &one, b, &la, a, &lb, &beta, c, &lc);
  } else {
    if (dgemm_ != nullptr) return dgemm_(&transa, &transb, &mm, &nn, &kk, &one, b, &la, a, &lb, &beta, c, &lc);
  }
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto a_ = at::from_blob(const_cast<T*>(a), {m, k}, {lda, 1}, options);
  auto b_ = b_transposed ? at::from_blob(const_cast<T*>(b), {k, n}, {1, ldb}, options)
                         : at::from_blob(const_cast<T*>(b), {k, n}, {ldb, 1}, options);
  auto c_ = at::from_blob(c, {m, n}, {ldc, 1}, options);
  if (accumulate) {
    c_.addmm_(a_, b_);
  } else {
    at::mm_out(c_, a_, b_);
  }
}

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// torch.nn.functional.softplus with its defaults (beta 1, threshold 20).
template <typename T>
inline T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}

void check_buffer(const at::Tensor& tensor, const char* name, const at::Tensor& like, int64_t dims) {
  TORCH_CHECK(tensor.dim() == dims, "lantm_loop: ", name, " must have ", dims, " dimensions, not ", tensor.dim());
  TORCH_CHECK(tensor.is_contiguous(), "lantm_loop: ", name, " must be contiguous");
  TORCH_CHECK(tensor.device().is_cpu(), "lantm_loop: ", name, " must be on the CPU");
  TORCH_CHECK(tensor.scalar_type() == like.scalar_type(), "lantm_loop: ", name, " must be ", like.scalar_type(),
              ", not ", tensor.scalar_type());
}

void check_size(const at::Tensor& tensor, const char* name, int64_t dim, int64_t size) {
  TORCH_CHECK(tensor.size(dim) == size, "lantm_loop: ", name, " must have size ", size, " along dimension ", dim,
              ", not ", tensor.size(dim));
}

// The groups' numerical constants that the built-in moves use, set by name from Python (groups.numerics and
// manifolds.Sphere), so that a kernel and the Python it mirrors share one source.
struct MoveConstants {
  double small_angle_sq = 0;            // below this squared angle, the Taylor series of the quaternion exponential
  double axis_softening = 0;            // the rotation axis is raw / sqrt(|raw|^2 + softening^2)
  double key_softening = 0;             // keys and mixed positions are x / sqrt(|x|^2 + softening^2)
  std::vector<double> half_angle_cos;   // cos(theta / 2) as a series in theta^2, lowest order first
  std::vector<double> half_angle_sinc;  // sin(theta / 2) / theta likewise
};

// `MoveConstants` in the loop's floating-point type.
template <typename T>
struct TypedMoveConstants {
  explicit TypedMoveConstants(const MoveConstants& c)
      : small_angle_sq(static_cast<T>(c.small_angle_sq)),
        axis_softening(static_cast<T>(c.axis_softening)),
        key_softening(static_cast<T>(c.key_softening)),
        half_angle_cos(c.half_angle_cos.begin(), c.half_angle_cos.end()),
        half_angle_sinc(c.half_angle_sinc.begin(), c.half_angle_sinc.end()) {
    TORCH_CHECK(!half_angle_cos.empty() && !half_angle_sinc.empty(), "lantm_loop: MoveConstants has no series");
  }
  T small_angle_sq, axis_softening, key_softening;
  std::vector<T> half_angle_cos, half_angle_sinc;
};

// sum_k coefficients[k] x^k by Horner's rule, as groups.numerics.series computes it.
template <typename T>
T series(const std::vector<T>& coefficients, T x) {
  T total = coefficients.back();
  for (auto k = static_cast<int64_t>(coefficients.size()) - 2; k >= 0; --k) total = total * x + coefficients[k];
  return total;
}

// The identity action: the zero shift, or the quaternion (1, 0, 0, 0).
template <typename T>
void native_identity(int64_t move_kind, T* action, int64_t element) {
  for (int64_t i = 0; i < element; ++i) action[i] = move_kind == 1 && i == 0 ? T(1) : T(0);
}

// torch.lerp's formula, exact at both ends.
template <typename T>
inline T lerp(T start, T end, T weight) {
  return weight < T(0.5) ? start + weight * (end - start) : end - (end - start) * (T(1) - weight);
}

// a / max(max|a|, 1) / hypot(|a / max(max|a|, 1)|, floor / max(max|a|, 1)): groups._numerics' bounded_vector
// (floor 1), soft_unit_axis (floor the axis softening) and manifolds.Sphere.soft_project (floor the key softening),
// overflow-safe for huge a. A NaN anywhere gives NaNs, as there: a diverging run must show in its loss.
template <typename T>
void bounded(const T* a, T* out, int64_t size, T floor) {
  T scale = 1;
  for (int64_t c = 0; c < size; ++c) scale = std::max(scale, std::abs(a[c]));
  T norm_sq = 0;
  for (int64_t c = 0; c < size; ++c) {
    out[c] = a[c] / scale;
    norm_sq += out[c] * out[c];
  }
  const T denominator = std::hypot(std::sqrt(norm_sq), floor / scale);
  for (int64_t c = 0; c < size; ++c) out[c] /= denominator;
}

// One head's move, q' = a . pi(lerp(q, pi(k), sigmoid(g))), for the built-in groups whose Python it mirrors
// (liemem.heads.LieHeads.move with groups.Translation or groups.SO3): raw is (key | action | gate).
// Kind 0 translates R^d by the bounded shift; kind 1 rotates S^2 by exp(axis * tanh(angle)) as a quaternion.
template <typename T>
void native_move(int64_t move_kind, int64_t dim, const T* raw, T* position, T* action,
                 const TypedMoveConstants<T>& constants) {
  const T* key = raw;
  const T gate = sigmoid(raw[move_kind == 0 ? 2 * dim : 2 * dim + 1]);
  if (move_kind == 0) {
    bounded(raw + dim, action, dim, T(1));
    for (int64_t c = 0; c < dim; ++c) position[c] = lerp(position[c], key[c], gate) + action[c];
    return;
  }
  T mixed[3];
  T unit_key[3];
  bounded(key, unit_key, 3, constants.key_softening);
  T lerped[3];
  for (int64_t c = 0; c < 3; ++c) lerped[c] = lerp(position[c], unit_key[c], gate);
  bounded(lerped, mixed, 3, constants.key_softening);
  T axis[3];
  bounded(raw + 3, axis, 3, constants.axis_softening);
  const T angle = std::tanh(raw[6]);
  T xi[3], theta_sq = 0;
  for (int64_t c = 0; c < 3; ++c) {
    xi[c] = axis[c] * angle;
    theta_sq += xi[c] * xi[c];
  }
  T real, factor;
  if (theta_sq < constants.small_angle_sq) {  // groups.SO3.exp's series
    real = series(constants.half_angle_cos, theta_sq);
    factor = series(constants.half_angle_sinc, theta_sq);
  } else {
    const T theta = std::sqrt(theta_sq);
    real = std::cos(theta / T(2));
    factor = std::sin(theta / T(2)) / theta;
  }
  action[0] = real;
  for (int64_t c = 0; c < 3; ++c) action[c + 1] = factor * xi[c];
  // x + w t + v x t with t = 2 v x x (groups.SO3.act).
  const T* v = action + 1;
  const T twice[3] = {T(2) * (v[1] * mixed[2] - v[2] * mixed[1]), T(2) * (v[2] * mixed[0] - v[0] * mixed[2]),
                      T(2) * (v[0] * mixed[1] - v[1] * mixed[0])};
  const T cross[3] = {v[1] * twice[2] - v[2] * twice[1], v[2] * twice[0] - v[0] * twice[2],
                      v[0] * twice[1] - v[1] * twice[0]};
  for (int64_t c = 0; c < 3; ++c) position[c] = mixed[c] + real * twice[c] + cross[c];
}

// Where the step projection's parts start, which weighting the read takes, and the read's constants
// (liemem.weighting).
struct LoopLayout {
  int64_t input_length = 0;
  int64_t raw_size = 0;           // one head's raw outputs; both heads' come first in the projection
  int64_t weighting = 0;          // 0: inverse square, 1: softmax (liemem.engine.kernels.WEIGHTINGS)
  int64_t weighting_column = -1;  // the softmax's temperature
  int64_t value_column = 0;
  int64_t strength_column = 0;
  double eps = 0;
  double weight_floor = 0;
  double temperature_floor = 0;
  int64_t initial_slots = 1;  // slots before the first write; input step t writes slot initial_slots + t
  // A content read (RAM, RAM/tape) instead of a distance read: w_i proportional to s_i exp(gamma <q, k_i>), the
  // query and write key straight from the projection's first 2 x raw_size columns, no heads to move.
  bool content = false;
  int64_t choice_column = -1;  // the tape's three choices (content only)
  int64_t gamma_column = -1;   // the sharpening's column (content only)
  // The squared distance a distance read weighs by (liemem.engine.cells.DISTANCES): 0 the chord |q - k|^2, 1 the
  // Poincaré ball's, F(s) = 4 asinh(sqrt(s))^2 with s = |q - k|^2 / ((1 - |q|^2)(1 - |k|^2)), each 1 - |x|^2
  // floored at `gap_floor`, and F summed as a series below `small_s` (see `PoincareDistance`).
  int64_t distance = 0;
  double small_s = 0;
  double gap_floor = 0;
  std::vector<double> asinh_sq_series;        // asinh(sqrt(s))^2 / s, lowest order first
  std::vector<double> asinh_sq_slope_series;  // d asinh(sqrt(s))^2 / ds likewise

  int64_t temperature_column() const { return weighting == 1 && !content ? weighting_column : -1; }
};

// The Poincaré ball's squared distance as manifolds/poincare.py computes it (`PoincareBall.dist2`), from the squared
// chord and the two points' gaps 1 - |x|^2, in the loop's floating-point type; `on` is false for the chordal distance.
template <typename T>
struct PoincareDistance {
  explicit PoincareDistance(const LoopLayout& layout)
      : on(layout.distance == 1),
        small_s(static_cast<T>(layout.small_s)),
        gap_floor(static_cast<T>(layout.gap_floor)),
        value(layout.asinh_sq_series.begin(), layout.asinh_sq_series.end()),
        slope(layout.asinh_sq_slope_series.begin(), layout.asinh_sq_slope_series.end()) {
    TORCH_CHECK(layout.distance == 0 || layout.distance == 1, "lantm_loop: unknown distance ", layout.distance);
    TORCH_CHECK(!on || (!value.empty() && !slope.empty()), "lantm_loop: the Poincaré distance needs its series");
  }
  // 1 - |x|^2 of a point of `dim` coordinates `stride` apart, floored.
  T gap(const T* point, int64_t dim, int64_t stride) const {
    T norm2 = 0;
    for (int64_t c = 0; c < dim; ++c) norm2 += point[c * stride] * point[c * stride];
    return std::max(T(1) - norm2, gap_floor);
  }
  // F(s) = 4 asinh(sqrt(s))^2.
  T squared(T s) const {
    if (s < small_s) return T(4) * (s * series(value, s));
    const T angle = std::asinh(std::sqrt(s));
    return T(4) * (angle * angle);
  }
  // F'(s) = 4 asinh(sqrt(s)) / sqrt(s (1 + s)).
  T derivative(T s) const {
    if (s < small_s) return T(4) * series(slope, s);
    const T root = std::sqrt(s);
    return T(4) * (std::asinh(root) / (root * std::sqrt(T(1) + s)));
  }
  bool on;
  T small_s, gap_floor;
  std::vector<T> value, slope;
};

// One distance read's weights over its first `slots` slots: the squared distances `d2` from `query` to the keys
// [d, capacity], the kernel `factor` (the inverse square, or with `softmax` exp(-(d_i - min d) * scale)), and the
// weights, normalised. Returns the nearest slot (ties to the first, as min(dim) gives them) and sets `total` to the
// normaliser. The forward pass calls it, and the backward pass calls it again where it recomputes a read instead of
// keeping it; it is never inlined, so both run the same machine code and agree bit for bit.
template <typename T>
__attribute__((noinline)) int64_t distance_weights(const T* query, const T* key, const T* strength, int64_t dim,
                                                   int64_t capacity, int64_t slots, bool softmax, T scale, T eps,
                                                   T floor, const PoincareDistance<T>& poincare, T* __restrict__ d2,
                                                   T* __restrict__ factor, T* __restrict__ weight, T* total) {
  for (int64_t i = 0; i < slots; ++i) d2[i] = 0;
  for (int64_t c = 0; c < dim; ++c) {
    const T q = query[c];
    const T* coordinate = key + c * capacity;
#pragma omp simd
    for (int64_t i = 0; i < slots; ++i) {
      const T diff = q - coordinate[i];
      d2[i] += diff * diff;
    }
  }
  if (poincare.on) {  // the chord becomes the hyperbolic distance; `factor` holds |k_i|^2 until it is overwritten
    const T gap_query = poincare.gap(query, dim, 1);
    for (int64_t i = 0; i < slots; ++i) factor[i] = 0;
    for (int64_t c = 0; c < dim; ++c) {
      const T* coordinate = key + c * capacity;
      for (int64_t i = 0; i < slots; ++i) factor[i] += coordinate[i] * coordinate[i];
    }
    for (int64_t i = 0; i < slots; ++i) {
      d2[i] = poincare.squared(d2[i] / (gap_query * std::max(T(1) - factor[i], poincare.gap_floor)));
    }
  }
  // Strictly smaller, so that ties go to the first slot, as min(dim) gives them.
  int64_t nearest = 0;
  for (int64_t i = 1; i < slots; ++i) {
    if (d2[i] < d2[nearest]) nearest = i;
  }
  const T smallest = d2[nearest];
  if (softmax) {
    for (int64_t i = 0; i < slots; ++i) factor[i] = std::exp(-(d2[i] - smallest) * scale);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < slots; ++i) factor[i] = (T(1) / (d2[i] + eps)) * (smallest + eps);
  }
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < slots; ++i) {
    weight[i] = factor[i] * strength[i] + floor;
    sum += weight[i];
  }
  *total = sum;
  const T inverse_total = T(1) / sum;
#pragma omp simd
  for (int64_t i = 0; i < slots; ++i) weight[i] *= inverse_total;
  return nearest;
}

// One content read's weights over its first `slots` slots (see `distance_weights`): the scores <q, k_i> into
// `score`, exp(gamma score_i - max) into `factor`, and the weights. Returns the slot of the largest score (ties to
// the first, as max(dim) gives them) and sets `total`.
template <typename T>
__attribute__((noinline)) int64_t content_weights(const T* query, const T* key, const T* strength, int64_t dim,
                                                  int64_t capacity, int64_t slots, T gamma, T floor,
                                                  T* __restrict__ score, T* __restrict__ factor, T* __restrict__ weight,
                                                  T* total) {
  for (int64_t i = 0; i < slots; ++i) score[i] = 0;
  for (int64_t c = 0; c < dim; ++c) {
    const T q = query[c];
    const T* coordinate = key + c * capacity;
#pragma omp simd
    for (int64_t i = 0; i < slots; ++i) score[i] += q * coordinate[i];
  }
  // Strictly larger, so that ties go to the first slot, as max(dim) gives them.
  int64_t largest = 0;
  for (int64_t i = 1; i < slots; ++i) {
    if (gamma * score[i] > gamma * score[largest]) largest = i;
  }
  const T top = gamma * score[largest];
  T sum = 0;
  for (int64_t i = 0; i < slots; ++i) {
    factor[i] = std::exp(gamma * score[i] - top);
    weight[i] = factor[i] * strength[i] + floor;
    sum += weight[i];
  }
  *total = sum;
  for (int64_t i = 0; i < slots; ++i) weight[i] /= sum;
  return largest;
}

// One sequence's buffers, by name. liemem/engine/kernels.py allocates them; the loop checks their shapes once.
struct LoopBuffers {
  at::Tensor projected;         // [T, B, 4H]: the input term of the LSTM gates, bias included
  at::Tensor recurrent;         // [T + 1, B, m + H]: row t is step t's recurrent input [r_{t-1}; h_{t-1}]
  at::Tensor recurrent_weight;  // [4H, m + H]
  at::Tensor step_weight;       // [P, H]
  at::Tensor step_bias;         // [P]
  at::Tensor outputs;           // [T, B, P]: row t is step t's projection of h_t
  at::Tensor cells;             // [T + 1, B, H]: row t is the cell before step t
  at::Tensor sigmoids;          // [T, B, 3H]: the LSTM's three gates
  at::Tensor candidates;        // [T, B, H]
  at::Tensor squashed;          // [T, B, H]: tanh of the new cell
  at::Tensor keys;              // [B, d, S]
  at::Tensor values;            // [B, m, S]
  at::Tensor strengths;         // [B, 1, S]
  at::Tensor queries;           // [T, B, d]: each read's query
  // Each read's per-slot state, [T, B, S] where the backward pass keeps it, or [1, B, S] where it recomputes it
  // from the query and the memory (memory then grows linearly with the sequence's length, not quadratically):
  at::Tensor dist2;    // its squared distances (content: its scores)
  at::Tensor factors;  // its unnormalised kernel
  at::Tensor weights;
  at::Tensor totals;   // [T, B]: the weights' normaliser
  at::Tensor nearest;  // [T, B], int64: the first nearest slot
  at::Tensor scales;   // [T, B]: 1 / temperature (softmax), or gamma (content)
  // A content read's tape only (see `LoopLayout::content`):
  at::Tensor choices;     // [T, B, 3]: the softmax mix of the read key and the two neighbours
  at::Tensor neighbours;  // [T + 1, B, 2, d]: the neighbour keys offered to step t (row 0 the initial ones)
};

// What the backward pass reads besides the loop's buffers, and where it writes.
struct BackwardBuffers {
  at::Tensor grad_answer_hidden;  // [A, B, H]
  at::Tensor grad_answer_reads;   // [A, B, m]
  at::Tensor encoder_jacobians;   // [L, B, 2, out, raw + out]: each input step's head moves
  at::Tensor answer_jacobians;    // [A, B, 1, out, raw + out]
  at::Tensor head_output_grads;   // [N, out], or empty: each move's output gradient, for the group's parameters
  at::Tensor grad_gates;          // [T, B, 4H]
  at::Tensor grad_outputs;        // [T, B, P]
  at::Tensor grad_keys;           // like keys
  at::Tensor grad_values;         // like values
  at::Tensor grad_strengths;      // like strengths
};

// The forward loop of one sequence: a time step is `control(t)`, the group's move (in Python), and
// `read_write(t, positions)`; or, for a move built in here, `run` takes every step in one call. The caller allocates
// every buffer; the loop checks them once, here, and each step then reaches its rows through raw pointers. Row t of
// each [T, ...] buffer belongs to step t: `recurrent` row t is step t's recurrent input [r_{t-1}; h_{t-1}] (row 0 the
// initial state), `cells` row t the cell before it, `outputs` row t the projection of h_t; `sigmoids`, `candidates` and
// `squashed` (tanh of the new cell) are the LSTM's saved activations. The read at step t keeps, per sample, its query,
// every slot's squared distance and kernel factor, the weights, their normaliser, the nearest slot and (softmax) 1 /
// temperature.
class ForwardLoop {
 public:
  ForwardLoop(const LoopBuffers& buffers, const LoopLayout& layout)
      : input_length_(layout.input_length),
        raw_size_(layout.raw_size),
        temperature_column_(layout.temperature_column()),
        value_column_(layout.value_column),
        strength_column_(layout.strength_column),
        eps_(layout.eps),
        weight_floor_(layout.weight_floor),
        temperature_floor_(layout.temperature_floor),
        layout_(layout) {
    PoincareDistance<double>{layout};  // refuses an unknown distance here, once
    const int64_t input_length = layout.input_length, raw_size = layout.raw_size;
    const int64_t temperature_column = layout.temperature_column(), value_column = layout.value_column;
    const int64_t strength_column = layout.strength_column;
    // Handles to the buffers (not copies of their data), named as the checks below name them.
    at::Tensor projected = buffers.projected, recurrent = buffers.recurrent,
               recurrent_weight = buffers.recurrent_weight;
    at::Tensor step_weight = buffers.step_weight, step_bias = buffers.step_bias, outputs = buffers.outputs;
    at::Tensor cells = buffers.cells, sigmoids = buffers.sigmoids, candidates = buffers.candidates;
    at::Tensor squashed = buffers.squashed, keys = buffers.keys, values = buffers.values;
    at::Tensor strengths = buffers.strengths, queries = buffers.queries, dist2 = buffers.dist2;
    at::Tensor factors = buffers.factors, weights = buffers.weights, totals = buffers.totals;
    at::Tensor nearest = buffers.nearest, scales = buffers.scales;
    const at::Tensor& like = projected;
    TORCH_CHECK(like.scalar_type() == at::kFloat || like.scalar_type() == at::kDouble,
                "lantm_loop: the loop runs in float32 or float64, not ", like.scalar_type());
    check_buffer(projected, "projected", like, 3);
    steps_ = projected.size(0);
    batch_ = projected.size(1);
    size_ = projected.size(2) / 4;
    TORCH_CHECK(projected.size(2) == 4 * size_ && size_ > 0, "lantm_loop: projected must be [steps, batch, 4H]");
    TORCH_CHECK(input_length >= 1 && input_length < steps_, "lantm_loop: input_length must be in [1, steps)");
    check_buffer(keys, "keys", like, 3);
    check_buffer(values, "values", like, 3);
    dim_ = keys.size(1);
    capacity_ = keys.size(2);
    width_ = values.size(1);
    projection_ = step_weight.size(0);
    initial_slots_ = layout.initial_slots;
    content_ = layout.content;
    choice_column_ = layout.choice_column;
    gamma_column_ = layout.gamma_column;
    TORCH_CHECK(initial_slots_ >= 1 && capacity_ == input_length + initial_slots_,
                "lantm_loop: the memory needs input_length + initial_slots slots");
    TORCH_CHECK(!content_ || (choice_column_ + 3 <= projection_ && gamma_column_ < projection_),
                "lantm_loop: projection columns out of range");
    TORCH_CHECK(raw_size > 0 && 2 * raw_size <= projection_, "lantm_loop: raw_size does not fit the projection");
    TORCH_CHECK(value_column >= 0 && value_column + width_ <= projection_ && strength_column >= 0 &&
                    strength_column < projection_ && temperature_column < projection_,
                "lantm_loop: projection columns out of range");
    const int64_t recurrent_size = width_ + size_;
    kept_rows_ = dist2.dim() == 3 ? dist2.size(0) : -1;
    TORCH_CHECK(kept_rows_ == steps_ || kept_rows_ == 1, "lantm_loop: dist2, factors and weights must be [steps, ",
                "batch, slots] (kept reads) or [1, batch, slots] (recomputed reads)");
    struct Expected {
      at::Tensor* tensor;
      const char* name;
      std::vector<int64_t> shape;
    };
    const std::vector<Expected> expected = {
        {&recurrent, "recurrent", {steps_ + 1, batch_, recurrent_size}},
        {&recurrent_weight, "recurrent_weight", {4 * size_, recurrent_size}},
        {&step_weight, "step_weight", {projection_, size_}},
        {&step_bias, "step_bias", {projection_}},
        {&outputs, "outputs", {steps_, batch_, projection_}},
        {&cells, "cells", {steps_ + 1, batch_, size_}},
        {&sigmoids, "sigmoids", {steps_, batch_, 3 * size_}},
        {&candidates, "candidates", {steps_, batch_, size_}},
        {&squashed, "squashed", {steps_, batch_, size_}},
        {&keys, "keys", {batch_, dim_, capacity_}},
        {&values, "values", {batch_, width_, capacity_}},
        {&strengths, "strengths", {batch_, 1, capacity_}},
        {&queries, "queries", {steps_, batch_, dim_}},
        {&dist2, "dist2", {kept_rows_, batch_, capacity_}},
        {&factors, "factors", {kept_rows_, batch_, capacity_}},
        {&weights, "weights", {kept_rows_, batch_, capacity_}},
        {&totals, "totals", {steps_, batch_}},
        {&scales, "scales", {steps_, batch_}},
    };
    for (const auto& item : expected) {
      check_buffer(*item.tensor, item.name, like, static_cast<int64_t>(item.shape.size()));
      for (size_t d = 0; d < item.shape.size(); ++d) check_size(*item.tensor, item.name, d, item.shape[d]);
    }
    TORCH_CHECK(nearest.scalar_type() == at::kLong && nearest.is_contiguous() && nearest.dim() == 2 &&
                    nearest.size(0) == steps_ && nearest.size(1) == batch_,
                "lantm_loop: nearest must be contiguous int64 [steps, batch]");
    // Held so that the raw pointers below stay valid for the loop's life.
    tensors_ = {projected, recurrent,  recurrent_weight, step_weight, step_bias, outputs,   cells,
                sigmoids,  candidates, squashed,         keys,        values,    strengths, queries,
                dist2,     factors,    weights,          totals,      nearest,   scales};
    gates_ = at::empty({batch_, 4 * size_}, like.options());
    // Per-step views for the elementwise activations, which run on ATen's vectorised functions; made once.
    for (int64_t t = 0; t < steps_; ++t) {
      const int64_t heads = t < input_length ? 2 : 1;
      raw_views_.push_back(outputs[t].narrow(1, 0, heads * raw_size).view({batch_, heads, raw_size}));
      sigmoid_rows_.push_back(sigmoids[t]);
      candidate_rows_.push_back(candidates[t]);
      squashed_rows_.push_back(squashed[t]);
      cell_rows_.push_back(cells[t + 1]);
      if (t < input_length) {
        value_raw_views_.push_back(outputs[t].narrow(1, value_column, width_));
        value_slot_views_.push_back(values.select(2, t + initial_slots_));
      }
    }
    gate_sigmoids_ = gates_.narrow(1, 0, 3 * size_);
    gate_candidates_ = gates_.narrow(1, 3 * size_, size_);
  }

  // Step t's controller: h_t and its projection. Returns the heads' raw outputs [B, heads, raw] (both heads
  // while writing, the read head after).
  at::Tensor control(int64_t t) {
    check_step(t);
    AT_DISPATCH_FLOATING_TYPES(gates_.scalar_type(), "control", [&] { control_step<scalar_t>(t); });
    return raw_views_[t];
  }

  // Step t's read, at the read head's new position, and while writing, the write at the write head's.
  // `positions` is [B, heads, d], head 0 reading and head 1 writing; any strides.
  void read_write(int64_t t, const at::Tensor& positions) {
    check_step(t);
    const bool writing = t < input_length_;
    TORCH_CHECK(positions.dim() == 3 && positions.size(0) == batch_ && positions.size(2) == dim_ &&
                    positions.size(1) >= (writing ? 2 : 1),
                "lantm_loop: read_write needs head positions [batch, heads, key_dim]");
    TORCH_CHECK(positions.scalar_type() == gates_.scalar_type() && positions.device().is_cpu(),
                "lantm_loop: head positions must have the memory's dtype and device");
    AT_DISPATCH_FLOATING_TYPES(gates_.scalar_type(), "read_write", [&] { read_write_step<scalar_t>(t, positions); });
  }

  // The whole sequence, with a move built in (see `native_move`) instead of the group's Python: `positions`
  // [B, 2, d] are the heads' starting positions; `position_log` [T, B, 2, d] and `action_log` [T, B, 2, e]
  // receive each step's head states before it moved (from the answer phase on, head 0 only).
  void run(int64_t move_kind, const at::Tensor& positions, at::Tensor position_log, at::Tensor action_log,
           const MoveConstants& constants) {
    const int64_t element = move_kind == kTranslation ? dim_ : 4;
    TORCH_CHECK(move_kind == kTranslation || (move_kind == kRotation && dim_ == 3), "lantm_loop: unknown move");
    TORCH_CHECK(raw_size_ == 2 * dim_ + 1 + (move_kind == kRotation ? 1 : 0), "lantm_loop: raw_size ", raw_size_,
                " does not fit the move");
    check_buffer(position_log, "position_log", gates_, 4);
    check_buffer(action_log, "action_log", gates_, 4);
    const std::vector<int64_t> log_shape = {steps_, batch_, 2, dim_}, action_shape = {steps_, batch_, 2, element};
    for (int d = 0; d < 4; ++d) {
      check_size(position_log, "position_log", d, log_shape[d]);
      check_size(action_log, "action_log", d, action_shape[d]);
    }
    TORCH_CHECK(positions.dim() == 3 && positions.size(0) == batch_ && positions.size(1) == 2 &&
                    positions.size(2) == dim_ && positions.scalar_type() == gates_.scalar_type(),
                "lantm_loop: run needs starting positions [batch, 2, key_dim] of the memory's dtype");
    AT_DISPATCH_FLOATING_TYPES(gates_.scalar_type(), "run", [&] {
      run_steps<scalar_t>(move_kind, positions.contiguous(), position_log, action_log,
                          TypedMoveConstants<scalar_t>(constants));
    });
  }

  // The whole sequence with a content read (`LoopLayout::content`): each step's controller, then its read and
  // write. With the tape, `choices` and `neighbours` (row 0 the initial neighbours, filled in by the caller)
  // receive each step's mix and the neighbour keys its read offers the next step.
  void run_content(const at::Tensor& choices, const at::Tensor& neighbours) {
    TORCH_CHECK(content_, "lantm_loop: run_content needs a content layout");
    if (choice_column_ >= 0) {
      check_buffer(choices, "choices", gates_, 3);
      check_buffer(neighbours, "neighbours", gates_, 4);
      const std::vector<int64_t> choice_shape = {steps_, batch_, 3}, neighbour_shape = {steps_ + 1, batch_, 2, dim_};
      for (int d = 0; d < 3; ++d) check_size(choices, "choices", d, choice_shape[d]);
      for (int d = 0; d < 4; ++d) check_size(neighbours, "neighbours", d, neighbour_shape[d]);
      choices_ = choices;
      neighbours_ = neighbours;
    }
    AT_DISPATCH_FLOATING_TYPES(gates_.scalar_type(), "run_content", [&] {
      for (int64_t t = 0; t < steps_; ++t) {
        control_step<scalar_t>(t);
        content_read_write<scalar_t>(t);
      }
    });
  }

  static constexpr int64_t kTranslation = 0, kRotation = 1;

 private:
  template <typename T>
  void run_steps(int64_t move_kind, const at::Tensor& start, at::Tensor& position_log, at::Tensor& action_log,
                 const TypedMoveConstants<T>& constants) {
    const int64_t batch = batch_, dim = dim_, element = action_log.size(3);
    // The heads' current states, [B, 2, d] and [B, 2, e]; the answer phase uses head 0 only.
    std::vector<T> position(start.data_ptr<T>(), start.data_ptr<T>() + batch * 2 * dim), action(batch * 2 * element);
    for (int64_t i = 0; i < batch * 2; ++i) native_identity<T>(move_kind, action.data() + i * element, element);
    for (int64_t t = 0; t < steps_; ++t) {
      const int64_t heads = t < input_length_ ? 2 : 1;
      control_step<T>(t);
      T* position_row = position_log.data_ptr<T>() + t * batch * 2 * dim;
      T* action_row = action_log.data_ptr<T>() + t * batch * 2 * element;
      std::copy(position.begin(), position.end(), position_row);
      std::copy(action.begin(), action.end(), action_row);
      const T* raw = data<T>(kOutputs) + t * batch * projection_;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t head = b * 2 + h;
          native_move<T>(move_kind, dim, raw + b * projection_ + h * raw_size_, position.data() + head * dim,
                         action.data() + head * element, constants);
        }
      }
      read_write_rows<T>(t, position.data(), 2 * dim, dim, 1);
    }
  }

  void check_step(int64_t t) const {
    TORCH_CHECK(t >= 0 && t < steps_, "lantm_loop: step ", t, " out of range [0, ", steps_, ")");
  }

  template <typename T>
  T* data(int index) const {
    return tensors_[index].data_ptr<T>();
  }

  enum Buffer {
    kProjected,
    kRecurrent,
    kRecurrentWeight,
    kStepWeight,
    kStepBias,
    kOutputs,
    kCells,
    kSigmoids,
    kCandidates,
    kSquashed,
    kKeys,
    kValues,
    kStrengths,
    kQueries,
    kDist2,
    kFactors,
    kWeights,
    kTotals,
    kNearest,
    kScales,
  };

  template <typename T>
  void control_step(int64_t t) {
    const int64_t batch = batch_, size = size_, recurrent_size = width_ + size_, projection = projection_;
    T* gates = gates_.data_ptr<T>();
    const T* projected = data<T>(kProjected) + t * batch * 4 * size;
    std::copy(projected, projected + batch * 4 * size, gates);
    T* recurrent = data<T>(kRecurrent);
    const T* recurrent_row = recurrent + t * batch * recurrent_size;
    matmul<T>(batch, 4 * size, recurrent_size, recurrent_row, recurrent_size, data<T>(kRecurrentWeight), recurrent_size,
              true, gates, 4 * size, true);
    at::sigmoid_out(sigmoid_rows_[t], gate_sigmoids_);
    at::tanh_out(candidate_rows_[t], gate_candidates_);
    const T* s = data<T>(kSigmoids) + t * batch * 3 * size;
    const T* g = data<T>(kCandidates) + t * batch * size;
    const T* c = data<T>(kCells) + t * batch * size;
    T* n = data<T>(kCells) + (t + 1) * batch * size;
    for (int64_t b = 0; b < batch; ++b) {
      const T* sb = s + b * 3 * size;
#pragma omp simd
      for (int64_t j = 0; j < size; ++j) n[b * size + j] = sb[size + j] * c[b * size + j] + sb[j] * g[b * size + j];
    }
    at::tanh_out(squashed_rows_[t], cell_rows_[t]);
    const T* squashed = data<T>(kSquashed) + t * batch * size;
    T* hidden = recurrent + (t + 1) * batch * recurrent_size + width_;
    for (int64_t b = 0; b < batch; ++b) {
      const T* output_gate = s + b * 3 * size + 2 * size;
#pragma omp simd
      for (int64_t j = 0; j < size; ++j) hidden[b * recurrent_size + j] = output_gate[j] * squashed[b * size + j];
    }
    T* output = data<T>(kOutputs) + t * batch * projection;
    const T* bias = data<T>(kStepBias);
    for (int64_t b = 0; b < batch; ++b) std::copy(bias, bias + projection, output + b * projection);
    matmul<T>(batch, projection, size, hidden, recurrent_size, data<T>(kStepWeight), size, true, output, projection,
              true);
  }

  template <typename T>
  void read_write_step(int64_t t, const at::Tensor& positions) {
    read_write_rows<T>(t, positions.data_ptr<T>(), positions.stride(0), positions.stride(1), positions.stride(2));
  }

  // One sample's rows at step t: what either read fills in, and where the step's write goes.
  template <typename T>
  struct SampleRows {
    const T* key;         // [d, S]
    const T* value;       // [m, S]
    const T* strength;    // [S]
    const T* row;         // the step projection's outputs
    T* query;             // [d]
    T* scores;            // [S]: squared distances, or content scores
    T* factor;            // [S]
    T* weight;            // [S]
    T* __restrict__ out;  // [m]: the read value
    T* total;
    T* scale;
    int64_t* extreme;  // the nearest (distance) or largest (content) slot
    int64_t slots;
  };

  template <typename T>
  SampleRows<T> sample_rows(int64_t t, int64_t b) {
    const int64_t capacity = capacity_, step = t * batch_ + b;
    const int64_t kept = (kept_rows_ == 1 ? b : step) * capacity;  // this read's per-slot rows
    return SampleRows<T>{data<T>(kKeys) + b * dim_ * capacity,
                         data<T>(kValues) + b * width_ * capacity,
                         data<T>(kStrengths) + b * capacity,
                         data<T>(kOutputs) + step * projection_,
                         data<T>(kQueries) + step * dim_,
                         data<T>(kDist2) + kept,
                         data<T>(kFactors) + kept,
                         data<T>(kWeights) + kept,
                         data<T>(kRecurrent) + ((t + 1) * batch_ + b) * (width_ + size_),
                         data<T>(kTotals) + step,
                         data<T>(kScales) + step,
                         tensors_[kNearest].data_ptr<int64_t>() + step,
                         (t < input_length_ ? t : input_length_) + initial_slots_};
  }

  // The read value, sum_i w_i v_i.
  template <typename T>
  void read_values(const SampleRows<T>& r) const {
    for (int64_t j = 0; j < width_; ++j) {
      const T* coordinate = r.value + j * capacity_;
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < r.slots; ++i) sum += r.weight[i] * coordinate[i];
      r.out[j] = sum;
    }
  }

  // The write of step t into slot t + initial_slots: the key (its coordinates `stride` apart) and the strength;
  // the value was written before the read.
  template <typename T>
  void write_slot(int64_t t, int64_t b, const T* row, const T* key, int64_t stride) {
    const int64_t capacity = capacity_, slot = t + initial_slots_;
    T* written_key = data<T>(kKeys) + b * dim_ * capacity + slot;
    for (int64_t c = 0; c < dim_; ++c) written_key[c * capacity] = key[c * stride];
    data<T>(kStrengths)[b * capacity + slot] = sigmoid(row[strength_column_]);
  }

  template <typename T>
  void read_write_rows(int64_t t, const T* position_data, int64_t position_batch, int64_t position_head,
                       int64_t position_coordinate) {
    if (t < input_length_) at::tanh_out(value_slot_views_[t], value_raw_views_[t]);  // the value it writes
    const bool writing = t < input_length_;
    const bool softmax = temperature_column_ >= 0;
    const T e = static_cast<T>(eps_), floor = static_cast<T>(weight_floor_);
    const PoincareDistance<T> poincare(layout_);
    for (int64_t b = 0; b < batch_; ++b) {
      const SampleRows<T> r = sample_rows<T>(t, b);
      const T* position = position_data + b * position_batch;
      for (int64_t c = 0; c < dim_; ++c) r.query[c] = position[c * position_coordinate];
      T scale = 0;
      if (softmax) {
        scale = T(1) / std::max(softplus(r.row[temperature_column_]), static_cast<T>(temperature_floor_));
        *r.scale = scale;
      }
      *r.extreme = distance_weights<T>(r.query, r.key, r.strength, dim_, capacity_, r.slots, softmax, scale, e, floor,
                                       poincare, r.scores, r.factor, r.weight, r.total);
      read_values(r);
      if (writing) write_slot(t, b, r.row, position + position_head, position_coordinate);
    }
  }

  // Step t's content read (as liemem/engine/content.py computes it), then its write. The buffers of a distance
  // read hold: queries the mixed query, dist2 the scores <q, k_i>, factors exp(gamma scores - max), nearest the
  // slot of the largest, scales gamma.
  template <typename T>
  void content_read_write(int64_t t) {
    const bool writing = t < input_length_, tape = choice_column_ >= 0, sharpening = gamma_column_ >= 0;
    if (writing) at::tanh_out(value_slot_views_[t], value_raw_views_[t]);  // the value it writes
    const int64_t dim = dim_, capacity = capacity_;
    T* choice_data = tape ? choices_.data_ptr<T>() + t * batch_ * 3 : nullptr;
    const T* offered = tape ? neighbours_.data_ptr<T>() + t * batch_ * 2 * dim : nullptr;
    T* next_offered = tape ? neighbours_.data_ptr<T>() + (t + 1) * batch_ * 2 * dim : nullptr;
    const T floor = static_cast<T>(weight_floor_);
    for (int64_t b = 0; b < batch_; ++b) {
      const SampleRows<T> r = sample_rows<T>(t, b);
      const int64_t slots = r.slots;
      const T* row = r.row;
      T* query = r.query;
      const T* weight = r.weight;
      if (tape) {  // softmax of the three choices, then the mix of the read key and the offered neighbours
        T* choice = choice_data + b * 3;
        const T* logits = row + choice_column_;
        const T top = std::max(logits[0], std::max(logits[1], logits[2]));
        T sum = 0;
        for (int j = 0; j < 3; ++j) sum += (choice[j] = std::exp(logits[j] - top));
        for (int j = 0; j < 3; ++j) choice[j] /= sum;
        const T* left = offered + b * 2 * dim;
        const T* right = left + dim;
        for (int64_t c = 0; c < dim; ++c) query[c] = choice[0] * row[c] + choice[1] * left[c] + choice[2] * right[c];
      } else {
        for (int64_t c = 0; c < dim; ++c) query[c] = row[c];
      }
      const T gamma = sharpening ? T(1) + softplus(row[gamma_column_]) : T(1);
      *r.scale = gamma;
      *r.extreme = content_weights<T>(query, r.key, r.strength, dim, capacity, slots, gamma, floor, r.scores, r.factor,
                                      r.weight, r.total);
      read_values(r);
      if (tape) {  // k_L = sum_i w_{i+1} k_i and k_R = sum_i w_{i-1} k_i, offered to the next step
        T* left = next_offered + b * 2 * dim;
        T* right = left + dim;
        for (int64_t c = 0; c < dim; ++c) {
          const T* coordinate = r.key + c * capacity;
          T sum_left = 0, sum_right = 0;
          for (int64_t i = 1; i < slots; ++i) sum_left += weight[i] * coordinate[i - 1];
          for (int64_t i = 0; i + 1 < slots; ++i) sum_right += weight[i] * coordinate[i + 1];
          left[c] = sum_left;
          right[c] = sum_right;
        }
      }
      if (writing) write_slot(t, b, row, row + raw_size_, 1);
    }
  }

  int64_t input_length_, raw_size_, temperature_column_, value_column_, strength_column_;
  double eps_, weight_floor_, temperature_floor_;
  LoopLayout layout_;
  int64_t initial_slots_ = 1, choice_column_ = -1, gamma_column_ = -1;
  bool content_ = false;
  at::Tensor choices_, neighbours_;
  int64_t steps_ = 0, batch_ = 0, size_ = 0, dim_ = 0, capacity_ = 0, width_ = 0, projection_ = 0;
  int64_t kept_rows_ = 0;  // rows of per-slot read state: steps_ (kept for the backward pass) or 1 (recomputed)
  std::vector<at::Tensor> tensors_, raw_views_, sigmoid_rows_, candidate_rows_, squashed_rows_, cell_rows_;
  std::vector<at::Tensor> value_raw_views_, value_slot_views_;
  at::Tensor gates_, gate_sigmoids_, gate_candidates_;
};

// The whole backward pass through time, in reverse, for what `control_step` and `read_write_rows` computed. It
// runs in the phases of `backward` in liemem/engine/tensor_ops.py: for each step, per sample, the answer's
// incoming gradients, the read (`read`), the write before it in the forward pass (`write`) and the heads' moves
// (`moves`); then, for the whole batch, the step projection and the LSTM cell (`controller`). The moves are
// differentiated through their Jacobians, taken beforehand by the caller: `encoder_jacobians` [L, B, 2, out, in]
// for the input steps' two heads, `answer_jacobians` [A, B, 1, out, in] for the answer steps' read head, with
// inputs laid out (raw output | state before) and out the state's size. Fills `grad_gates`, `grad_outputs` and
// the memory's gradients (all zero on entry), and `head_output_grads` if defined (each move's output gradient,
// for the group's parameters).
template <typename T>
class BackwardLoop {
 public:
  BackwardLoop(const LoopBuffers& b, const LoopLayout& layout, const BackwardBuffers& g)
      : layout_(layout),
        steps_(b.outputs.size(0)),
        batch_(b.outputs.size(1)),
        size_(b.cells.size(2)),
        width_(b.values.size(1)),
        dim_(b.keys.size(1)),
        capacity_(b.values.size(2)),
        projection_(b.outputs.size(2)),
        out_size_(layout.content ? 0 : g.encoder_jacobians.size(3)),
        input_size_(layout.content ? 0 : g.encoder_jacobians.size(4)),
        softmax_(layout.temperature_column() >= 0),
        poincare_(layout),
        eps_(static_cast<T>(layout.eps)),
        scale_ceiling_(T(1) / static_cast<T>(layout.temperature_floor)) {
    for (const at::Tensor* tensor :
         {&b.recurrent_weight, &b.step_weight, &b.outputs,      &b.sigmoids,  &b.candidates,  &b.cells,
          &b.squashed,         &b.keys,        &b.values,       &b.strengths, &b.queries,     &b.dist2,
          &b.factors,          &b.weights,     &b.totals,       &b.nearest,   &b.scales,      &g.encoder_jacobians,
          &g.answer_jacobians, &g.grad_gates,  &g.grad_outputs, &g.grad_keys, &g.grad_values, &g.grad_strengths}) {
      TORCH_CHECK(tensor->is_contiguous(), "lantm_loop: the backward pass needs contiguous buffers");
    }
    TORCH_CHECK(layout.content || input_size_ == layout.raw_size + out_size_,
                "lantm_loop: Jacobians must be [out, raw + out]");
    tape_ = layout.content && layout.choice_column >= 0;
    if (tape_) {
      TORCH_CHECK(b.choices.is_contiguous() && b.neighbours.is_contiguous(),
                  "lantm_loop: the tape needs contiguous buffers");
      choices_ = b.choices.data_ptr<T>();
      neighbours_ = b.neighbours.data_ptr<T>();
    }
    grad_neighbours_ = at::zeros({batch_, 2, dim_}, b.outputs.options());
    TORCH_CHECK(!layout.content || dim_ <= kMaxContentKey, "lantm_loop: content keys wider than ", kMaxContentKey);
    const bool track_heads = g.head_output_grads.numel() > 0;
    TORCH_CHECK(!track_heads || g.head_output_grads.is_contiguous(), "lantm_loop: head_output_grads not contiguous");
    answer_hidden_ = g.grad_answer_hidden.contiguous();
    answer_reads_ = g.grad_answer_reads.contiguous();
    const auto options = b.outputs.options();
    grad_recurrent_ = at::zeros({batch_, width_ + size_}, options);
    grad_cell_ = at::zeros({batch_, size_}, options);
    grad_heads_ = at::zeros({batch_, 2, out_size_}, options);
    // Scratch rows from torch's allocator, which aligns every buffer to 64 bytes, not std::vector's heap memory.
    // The sums below are vectorised (-fassociative-math), and the compiler may peel a few iterations up to an
    // alignment boundary: on memory whose alignment changes from run to run, each run would split the sums
    // differently, and two runs of the same seed would part after a few dozen steps.
    scratch_ = at::zeros({3 * capacity_ + input_size_}, options);
    kept_ = b.dist2.size(0) == steps_;
    outputs_ = b.outputs.data_ptr<T>();
    step_weight_ = b.step_weight.data_ptr<T>();
    recurrent_weight_ = b.recurrent_weight.data_ptr<T>();
    keys_ = b.keys.data_ptr<T>();
    values_ = b.values.data_ptr<T>();
    strengths_ = b.strengths.data_ptr<T>();
    dist2_ = b.dist2.data_ptr<T>();
    factors_ = b.factors.data_ptr<T>();
    weights_ = b.weights.data_ptr<T>();
    queries_ = b.queries.data_ptr<T>();
    totals_ = b.totals.data_ptr<T>();
    nearest_ = b.nearest.data_ptr<int64_t>();
    scales_ = b.scales.data_ptr<T>();
    sigmoids_ = b.sigmoids.data_ptr<T>();
    candidates_ = b.candidates.data_ptr<T>();
    cells_ = b.cells.data_ptr<T>();
    squashed_ = b.squashed.data_ptr<T>();
    encoder_jacobians_ = g.encoder_jacobians.data_ptr<T>();
    answer_jacobians_ = g.answer_jacobians.data_ptr<T>();
    grad_keys_ = g.grad_keys.data_ptr<T>();
    grad_values_ = g.grad_values.data_ptr<T>();
    grad_strengths_ = g.grad_strengths.data_ptr<T>();
    grad_outputs_ = g.grad_outputs.data_ptr<T>();
    grad_gates_ = g.grad_gates.data_ptr<T>();
    tracked_ = track_heads ? g.head_output_grads.data_ptr<T>() : nullptr;
  }

  // Returns the gradients of the initial hidden state, cell, read vector and head states.
  std::vector<at::Tensor> run() {
    grad_recurrent_data_ = grad_recurrent_.data_ptr<T>();
    grad_heads_data_ = grad_heads_.data_ptr<T>();
    grad_weight_ = scratch_.data_ptr<T>();
    minus_grad_dist2_ = grad_weight_ + capacity_;
    moved_ = minus_grad_dist2_ + capacity_;
    radial_ = moved_ + input_size_;
    for (int64_t t = steps_ - 1; t >= 0; --t) {
      for (int64_t b = 0; b < batch_; ++b) {
        answer_inputs(t, b);
        if (layout_.content) {
          if (t < layout_.input_length) write(t, b);
          content_read(t, b);
        } else {
          read(t, b);
          if (t < layout_.input_length) write(t, b);
          moves(t, b);
        }
      }
      controller(t);
    }
    return {grad_recurrent_.narrow(1, width_, size_).clone(), grad_cell_, grad_recurrent_.narrow(1, 0, width_).clone(),
            layout_.content ? grad_neighbours_ : grad_heads_};
  }

 private:
  T* grad_read(int64_t b) const { return grad_recurrent_data_ + b * (width_ + size_); }
  T* grad_output(int64_t t, int64_t b) const { return grad_outputs_ + (t * batch_ + b) * projection_; }
  T* grad_head(int64_t b) const { return grad_heads_data_ + b * 2 * out_size_; }
  int64_t slots(int64_t t) const { return std::min(t, layout_.input_length) + layout_.initial_slots; }

  // An answer step's output feeds the logits: add the gradients of its hidden state and read.
  void answer_inputs(int64_t t, int64_t b) {
    if (t < layout_.input_length) return;
    const int64_t answer = t - layout_.input_length;
    const T* hidden_in = answer_hidden_.data_ptr<T>() + (answer * batch_ + b) * size_;
    const T* read_in = answer_reads_.data_ptr<T>() + (answer * batch_ + b) * width_;
    T* grad_read_row = grad_read(b);
    T* grad_hidden_row = grad_read_row + width_;
    for (int64_t j = 0; j < size_; ++j) grad_hidden_row[j] += hidden_in[j];
    for (int64_t j = 0; j < width_; ++j) grad_read_row[j] += read_in[j];
  }

  // One sample's saved read at step t, and where its gradients go.
  struct ReadRows {
    const T *scores, *factor, *weight, *query;  // squared distances or content scores, per slot
    T total, scale;
    int64_t extreme;  // the nearest (distance) or largest (content) slot
    const T *value, *strength, *key, *grad_read;
    T *grad_value, *grad_strength, *grad_key;
    int64_t slots;
  };

  // Where the forward pass kept the read's per-slot state, its rows; where it did not, the state recomputed, by
  // the forward pass's own function, into the sample's row of the one-step buffers.
  ReadRows read_rows(int64_t t, int64_t b) const {
    const int64_t capacity = capacity_, step = t * batch_ + b, n = slots(t);
    const T* query = queries_ + step * dim_;
    const T *key = keys_ + b * dim_ * capacity, *strength = strengths_ + b * capacity;
    T total = totals_[step];
    int64_t extreme = nearest_[step];
    const int64_t saved = (kept_ ? step : b) * capacity;
    if (!kept_) {
      const T floor = static_cast<T>(layout_.weight_floor);
      extreme = layout_.content ? content_weights<T>(query, key, strength, dim_, capacity, n, scales_[step], floor,
                                                     dist2_ + saved, factors_ + saved, weights_ + saved, &total)
                                : distance_weights<T>(query, key, strength, dim_, capacity, n, softmax_,
                                                      softmax_ ? scales_[step] : T(0), eps_, floor, poincare_,
                                                      dist2_ + saved, factors_ + saved, weights_ + saved, &total);
    }
    return ReadRows{dist2_ + saved,
                    factors_ + saved,
                    weights_ + saved,
                    query,
                    total,
                    scales_[step],
                    extreme,
                    values_ + b * width_ * capacity,
                    strength,
                    key,
                    grad_read(b),
                    grad_values_ + b * width_ * capacity,
                    grad_strengths_ + b * capacity,
                    grad_keys_ + b * dim_ * capacity,
                    n};
  }

  // The gradient of each slot's weight from the read value's: <grad r, v_i>, into `grad_weight_`.
  void weight_grads(const ReadRows& r) {
    T* grad_weight = grad_weight_;
    const int64_t n = r.slots;
    for (int64_t i = 0; i < n; ++i) grad_weight[i] = 0;
    for (int64_t j = 0; j < width_; ++j) {
      const T g = r.grad_read[j];
      const T* coordinate = r.value + j * capacity_;
      for (int64_t i = 0; i < n; ++i) grad_weight[i] += g * coordinate[i];
    }
  }

  // The read at step t (`cells.chordal_read_backward`): gradients of its weights, through the normalisation and
  // the weighting to the squared distances, the strengths and the values, then to the keys and the query.
  void read(int64_t t, int64_t b) {
    const ReadRows r = read_rows(t, b);
    const int64_t capacity = capacity_, width = width_, dim = dim_, n = r.slots;
    const T *d2 = r.scores, *factor = r.factor, *weight = r.weight, *query = r.query;
    const T total = r.total;
    const int64_t near = r.extreme;
    const T *strength = r.strength, *key = r.key, *grad_read_row = r.grad_read;
    T *grad_value = r.grad_value, *grad_strength = r.grad_strength, *grad_key = r.grad_key;
    T* grad_weight = grad_weight_;
    T* minus_grad_dist2 = minus_grad_dist2_;
    weight_grads(r);
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += grad_weight[i] * weight[i];
    T grad_nearest = 0, grad_temperature = 0;
    const T scale = softmax_ ? r.scale : T(0);
    if (softmax_) {
      const T nearest_dist2 = d2[near];
      for (int64_t i = 0; i < n; ++i) {
        const T grad_unnormalised = (grad_weight[i] - dot) / total;
        minus_grad_dist2[i] = grad_unnormalised * strength[i] * factor[i] * scale;
        grad_nearest += minus_grad_dist2[i];
        grad_temperature += minus_grad_dist2[i] * (d2[i] - nearest_dist2);
        grad_strength[i] += grad_unnormalised * factor[i];
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T grad_unnormalised = (grad_weight[i] - dot) / total;
        const T grad_factor = grad_unnormalised * strength[i];
        const T slot_scale = T(1) / (d2[i] + eps_);
        minus_grad_dist2[i] = grad_factor * factor[i] * slot_scale;
        grad_nearest += grad_factor * slot_scale;
        grad_strength[i] += grad_unnormalised * factor[i];
      }
    }
    for (int64_t j = 0; j < width; ++j) {
      const T g = grad_read_row[j];
      T* grad_coordinate = grad_value + j * capacity;
      for (int64_t i = 0; i < n; ++i) grad_coordinate[i] += weight[i] * g;
    }
    // The nearest distance m = min_j d_j passes its gradient to its slot, as `min(dim)` does.
    minus_grad_dist2[near] -= grad_nearest;
    // The Poincaré distance d_i^2 = F(s_i), s_i = |q - k_i|^2 / (gap_q gap_i) (`cells.distance_read_backward`): the
    // chord's gradient scaled by F'(s_i) / (gap_q gap_i), and a radial part for each point, -2 x F'(s_i) s_i / gap_x.
    T* radial = radial_;
    T radial_total = 0, gap_query = 1;
    if (poincare_.on) {
      gap_query = poincare_.gap(query, dim, 1);
      for (int64_t i = 0; i < n; ++i) {
        T norm2 = 0, chord2 = 0;
        for (int64_t d = 0; d < dim; ++d) {
          const T k = key[d * capacity + i], diff = query[d] - k;
          norm2 += k * k;
          chord2 += diff * diff;
        }
        const T gap_key = std::max(T(1) - norm2, poincare_.gap_floor);
        const T s = chord2 / (gap_query * gap_key);
        const T minus_grad_s = minus_grad_dist2[i] * poincare_.derivative(s);
        radial[i] = minus_grad_s * s / gap_key;
        radial_total += minus_grad_s * s;
        minus_grad_dist2[i] = minus_grad_s / (gap_query * gap_key);
      }
    }
    T* grad_query = grad_head(b);
    for (int64_t d = 0; d < dim; ++d) {
      const T q = query[d];
      const T* coordinate = key + d * capacity;
      T* grad_coordinate = grad_key + d * capacity;
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T minus_grad_diff = minus_grad_dist2[i] * (q - coordinate[i]);
        sum += minus_grad_diff;
        grad_coordinate[i] += T(2) * minus_grad_diff;
      }
      if (poincare_.on) {
        for (int64_t i = 0; i < n; ++i) grad_coordinate[i] -= T(2) * coordinate[i] * radial[i];
        sum += q * radial_total / gap_query;
      }
      grad_query[d] += T(-2) * sum;
    }
    if (softmax_) {  // through the temperature's floor and softplus, to its column
      const int64_t column = layout_.temperature_column();
      const T clamp = scale < scale_ceiling_ ? T(1) : T(0);
      const T raw = outputs_[(t * batch_ + b) * projection_ + column];
      grad_output(t, b)[column] = grad_temperature * scale * clamp * sigmoid(raw);
    }
  }

  // The content read at step t (`_backward` of liemem/engine/content.py): the read value and the neighbours it
  // offered the next step, the normalisation, the strengths and the exponential, the sharpening, then the query,
  // through the tape's mix where there is one.
  void content_read(int64_t t, int64_t b) {
    const ReadRows r = read_rows(t, b);
    const int64_t capacity = capacity_, width = width_, dim = dim_, n = r.slots;
    const T *score = r.scores, *factor = r.factor, *weight = r.weight, *query = r.query;
    const T total = r.total, gamma = r.scale;
    const int64_t largest = r.extreme;
    const T *strength = r.strength, *key = r.key, *grad_read_row = r.grad_read;
    T *grad_value = r.grad_value, *grad_strength = r.grad_strength, *grad_key = r.grad_key;
    T* grad_row = grad_output(t, b);
    T* grad_weight = grad_weight_;
    T* grad_scaled = minus_grad_dist2_;
    weight_grads(r);
    for (int64_t j = 0; j < width; ++j) {
      const T g = grad_read_row[j];
      T* grad_coordinate = grad_value + j * capacity;
      for (int64_t i = 0; i < n; ++i) grad_coordinate[i] += weight[i] * g;
    }
    T* grad_offered = grad_neighbours_.data_ptr<T>() + b * 2 * dim;  // of the neighbours step t + 1 mixed in
    if (tape_) {
      const T* grad_left = grad_offered;
      const T* grad_right = grad_offered + dim;
      for (int64_t c = 0; c < dim; ++c) {
        const T* coordinate = key + c * capacity;
        T* grad_coordinate = grad_key + c * capacity;
        for (int64_t i = 1; i < n; ++i) {
          grad_weight[i] += grad_left[c] * coordinate[i - 1];
          grad_coordinate[i - 1] += weight[i] * grad_left[c];
        }
        for (int64_t i = 0; i + 1 < n; ++i) {
          grad_weight[i] += grad_right[c] * coordinate[i + 1];
          grad_coordinate[i + 1] += weight[i] * grad_right[c];
        }
      }
    }
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += grad_weight[i] * weight[i];
    T sum_scaled = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T grad_unnormalised = (grad_weight[i] - dot) / total;
      grad_strength[i] += grad_unnormalised * factor[i];
      grad_scaled[i] = grad_unnormalised * strength[i] * factor[i];
      sum_scaled += grad_scaled[i];
    }
    grad_scaled[largest] -= sum_scaled;  // the max the exponentials are taken relative to, as `max(dim)` passes it
    if (layout_.gamma_column >= 0) {
      T grad_gamma = 0;
      for (int64_t i = 0; i < n; ++i) grad_gamma += grad_scaled[i] * score[i];
      grad_row[layout_.gamma_column] =
          grad_gamma * sigmoid(outputs_[(t * batch_ + b) * projection_ + layout_.gamma_column]);
    }
    T grad_query[kMaxContentKey];
    for (int64_t c = 0; c < dim; ++c) {
      const T q = query[c];
      const T* coordinate = key + c * capacity;
      T* grad_coordinate = grad_key + c * capacity;
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T grad_score = grad_scaled[i] * gamma;
        sum += grad_score * coordinate[i];
        grad_coordinate[i] += grad_score * q;
      }
      grad_query[c] = sum;
    }
    if (!tape_) {
      for (int64_t c = 0; c < dim; ++c) grad_row[c] = grad_query[c];
      return;
    }
    const T* choice = choices_ + (t * batch_ + b) * 3;
    const T* left = neighbours_ + (t * batch_ + b) * 2 * dim;
    const T* right = left + dim;
    const T* raw = outputs_ + (t * batch_ + b) * projection_;
    T grad_choice[3] = {0, 0, 0};
    for (int64_t c = 0; c < dim; ++c) {
      grad_choice[0] += raw[c] * grad_query[c];
      grad_choice[1] += left[c] * grad_query[c];
      grad_choice[2] += right[c] * grad_query[c];
      grad_row[c] = choice[0] * grad_query[c];
      grad_offered[c] = choice[1] * grad_query[c];
      grad_offered[dim + c] = choice[2] * grad_query[c];
    }
    const T mixed = choice[0] * grad_choice[0] + choice[1] * grad_choice[1] + choice[2] * grad_choice[2];
    for (int j = 0; j < 3; ++j) grad_row[layout_.choice_column + j] = choice[j] * (grad_choice[j] - mixed);
  }

  // The write of step t into slot t + 1: its key is the write head's position, its value tanh and its strength
  // sigmoid of the step projection's columns.
  void write(int64_t t, int64_t b) {
    const int64_t capacity = capacity_, slot = t + layout_.initial_slots;
    const T* value = values_ + b * width_ * capacity;
    const T* grad_value = grad_values_ + b * width_ * capacity;
    const T* grad_key = grad_keys_ + b * dim_ * capacity;
    T* grad_row = grad_output(t, b);
    // The key is the write head's position, or with a content read the projection's write key columns.
    T* grad_write_head = layout_.content ? grad_row + layout_.raw_size : grad_head(b) + out_size_;
    for (int64_t d = 0; d < dim_; ++d) grad_write_head[d] += grad_key[d * capacity + slot];
    for (int64_t j = 0; j < width_; ++j) {
      const T written = value[j * capacity + slot];
      grad_row[layout_.value_column + j] = grad_value[j * capacity + slot] * (T(1) - written * written);
    }
    const T y = strengths_[b * capacity + slot];
    grad_row[layout_.strength_column] = grad_strengths_[b * capacity + slot] * (T(1) - y) * y;
  }

  // The heads' moves of step t, through their Jacobians: to the raw outputs' columns and the states before.
  void moves(int64_t t, int64_t b) {
    const int64_t input_length = layout_.input_length, raw_size = layout_.raw_size;
    const int64_t out_size = out_size_, input_size = input_size_;
    const bool writing = t < input_length;
    const int64_t heads = writing ? 2 : 1;
    const T* jacobians = writing ? encoder_jacobians_ + t * batch_ * 2 * out_size * input_size
                                 : answer_jacobians_ + (t - input_length) * batch_ * out_size * input_size;
    T* grad_row = grad_output(t, b);
    T* moved = moved_;
    for (int64_t h = 0; h < heads; ++h) {
      const T* jacobian = jacobians + (b * heads + h) * out_size * input_size;
      T* grad_state = grad_head(b) + h * out_size;
      if (tracked_ != nullptr) {
        const int64_t row =
            writing ? (t * batch_ + b) * 2 + h : input_length * batch_ * 2 + (t - input_length) * batch_ + b;
        for (int64_t o = 0; o < out_size; ++o) tracked_[row * out_size + o] = grad_state[o];
      }
      for (int64_t i = 0; i < input_size; ++i) moved[i] = 0;
      for (int64_t o = 0; o < out_size; ++o) {
        const T grad = grad_state[o];
        const T* jacobian_row = jacobian + o * input_size;
        for (int64_t i = 0; i < input_size; ++i) moved[i] += grad * jacobian_row[i];
      }
      for (int64_t r = 0; r < raw_size; ++r) grad_row[h * raw_size + r] = moved[r];
      for (int64_t o = 0; o < out_size; ++o) grad_state[o] = moved[raw_size + o];
    }
  }

  // Step t's controller for the whole batch: the step projection, then the LSTM cell, then the recurrent input
  // [r_{t-1}; h_{t-1}].
  void controller(int64_t t) {
    const int64_t batch = batch_, size = size_, width = width_, recurrent_size = width_ + size_;
    T* grad_recurrent = grad_recurrent_data_;
    matmul<T>(batch, size, projection_, grad_output(t, 0), projection_, step_weight_, size, false,
              grad_recurrent + width, recurrent_size, true);
    const T* sigmoid_row = sigmoids_ + t * batch * 3 * size;
    const T* candidate_row = candidates_ + t * batch * size;
    const T* cell_row = cells_ + t * batch * size;
    const T* squashed_row = squashed_ + t * batch * size;
    T* grad_gate = grad_gates_ + t * batch * 4 * size;
    T* grad_cell = grad_cell_.data_ptr<T>();
    for (int64_t b = 0; b < batch; ++b) {
      const T* s = sigmoid_row + b * 3 * size;
      const T* g = candidate_row + b * size;
      const T* c = cell_row + b * size;
      const T* sq = squashed_row + b * size;
      const T* grad_hidden_row = grad_recurrent + b * recurrent_size + width;
      T* gc = grad_cell + b * size;
      T* gg = grad_gate + b * 4 * size;
      for (int64_t j = 0; j < size; ++j) {
        const T input_gate = s[j], forget_gate = s[size + j], output_gate = s[2 * size + j];
        const T candidate = g[j], squash = sq[j], hidden_grad = grad_hidden_row[j];
        const T cell_grad = gc[j] + hidden_grad * output_gate * (T(1) - squash * squash);
        gg[j] = cell_grad * candidate * (T(1) - input_gate) * input_gate;
        gg[size + j] = cell_grad * c[j] * (T(1) - forget_gate) * forget_gate;
        gg[2 * size + j] = hidden_grad * squash * (T(1) - output_gate) * output_gate;
        gg[3 * size + j] = cell_grad * input_gate * (T(1) - candidate * candidate);
        gc[j] = cell_grad * forget_gate;
      }
    }
    matmul<T>(batch, recurrent_size, 4 * size, grad_gate, 4 * size, recurrent_weight_, recurrent_size, false,
              grad_recurrent, recurrent_size, false);
  }

  static constexpr int64_t kMaxContentKey = 256;
  bool tape_ = false;
  const T *choices_ = nullptr, *neighbours_ = nullptr;
  at::Tensor grad_neighbours_;
  LoopLayout layout_;
  int64_t steps_, batch_, size_, width_, dim_, capacity_, projection_, out_size_, input_size_;
  bool softmax_;
  PoincareDistance<T> poincare_;
  T eps_, scale_ceiling_;
  at::Tensor answer_hidden_, answer_reads_, grad_recurrent_, grad_cell_, grad_heads_, scratch_;
  bool kept_ = true;  // whether the forward pass kept each read's per-slot state (else it is recomputed)
  T *dist2_, *factors_, *weights_;
  const T *outputs_, *step_weight_, *recurrent_weight_, *keys_, *values_, *strengths_, *queries_, *totals_, *scales_,
      *sigmoids_, *candidates_, *cells_, *squashed_, *encoder_jacobians_, *answer_jacobians_;
  const int64_t* nearest_;
  T *grad_keys_, *grad_values_, *grad_strengths_, *grad_outputs_, *grad_gates_, *tracked_;
  T *grad_recurrent_data_ = nullptr, *grad_heads_data_ = nullptr;
  T *grad_weight_ = nullptr, *minus_grad_dist2_ = nullptr, *moved_ = nullptr, *radial_ = nullptr;
};

// The backward pass of one sequence (see `BackwardLoop`).
std::vector<at::Tensor> backward(const LoopBuffers& b, const LoopLayout& layout, const BackwardBuffers& g) {
  TORCH_CHECK(b.outputs.scalar_type() == at::kFloat || b.outputs.scalar_type() == at::kDouble,
              "lantm_loop: the backward pass runs in float32 or float64");
  if (b.outputs.scalar_type() == at::kDouble) return BackwardLoop<double>(b, layout, g).run();
  return BackwardLoop<float>(b, layout, g).run();
}

}  // namespace

// `native_move` on tensors, for tests: raw [N, raw], positions [N, d] and actions [N, e] (float64 or float32),
// moved in place.
void native_move_tensors(int64_t move_kind, const at::Tensor& raw, at::Tensor positions, at::Tensor actions,
                         const MoveConstants& move_constants) {
  TORCH_CHECK(move_kind == 0 || move_kind == 1, "lantm_loop: unknown move");
  for (const at::Tensor* tensor : std::initializer_list<const at::Tensor*>{&raw, &positions, &actions}) {
    TORCH_CHECK(tensor->dim() == 2 && tensor->is_contiguous() && tensor->scalar_type() == raw.scalar_type() &&
                    tensor->size(0) == raw.size(0),
                "lantm_loop: native_move needs contiguous [N, ...] tensors of one dtype");
  }
  const int64_t dim = positions.size(1);
  TORCH_CHECK(move_kind == 0 || dim == 3, "lantm_loop: rotations move keys of S^2");
  TORCH_CHECK(raw.size(1) == 2 * dim + 1 + move_kind && actions.size(1) == (move_kind == 0 ? dim : 4),
              "lantm_loop: native_move got raw outputs or actions of the wrong size");
  AT_DISPATCH_FLOATING_TYPES(raw.scalar_type(), "native_move", [&] {
    const TypedMoveConstants<scalar_t> constants(move_constants);
    for (int64_t n = 0; n < raw.size(0); ++n) {
      native_move<scalar_t>(move_kind, dim, raw.data_ptr<scalar_t>() + n * raw.size(1),
                            positions.data_ptr<scalar_t>() + n * dim,
                            actions.data_ptr<scalar_t>() + n * actions.size(1), constants);
    }
  });
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  pybind11::class_<MoveConstants>(module, "MoveConstants")
      .def(pybind11::init<>())
      .def_readwrite("small_angle_sq", &MoveConstants::small_angle_sq)
      .def_readwrite("axis_softening", &MoveConstants::axis_softening)
      .def_readwrite("key_softening", &MoveConstants::key_softening)
      .def_readwrite("half_angle_cos", &MoveConstants::half_angle_cos)
      .def_readwrite("half_angle_sinc", &MoveConstants::half_angle_sinc);
  pybind11::class_<LoopBuffers> buffers(module, "LoopBuffers");
  buffers.def(pybind11::init<>());
#define LIEMEM_FIELD(Struct, object, name) object.def_readwrite(#name, &Struct::name)
  LIEMEM_FIELD(LoopBuffers, buffers, projected);
  LIEMEM_FIELD(LoopBuffers, buffers, recurrent);
  LIEMEM_FIELD(LoopBuffers, buffers, recurrent_weight);
  LIEMEM_FIELD(LoopBuffers, buffers, step_weight);
  LIEMEM_FIELD(LoopBuffers, buffers, step_bias);
  LIEMEM_FIELD(LoopBuffers, buffers, outputs);
  LIEMEM_FIELD(LoopBuffers, buffers, cells);
  LIEMEM_FIELD(LoopBuffers, buffers, sigmoids);
  LIEMEM_FIELD(LoopBuffers, buffers, candidates);
  LIEMEM_FIELD(LoopBuffers, buffers, squashed);
  LIEMEM_FIELD(LoopBuffers, buffers, keys);
  LIEMEM_FIELD(LoopBuffers, buffers, values);
  LIEMEM_FIELD(LoopBuffers, buffers, strengths);
  LIEMEM_FIELD(LoopBuffers, buffers, queries);
  LIEMEM_FIELD(LoopBuffers, buffers, dist2);
  LIEMEM_FIELD(LoopBuffers, buffers, factors);
  LIEMEM_FIELD(LoopBuffers, buffers, weights);
  LIEMEM_FIELD(LoopBuffers, buffers, totals);
  LIEMEM_FIELD(LoopBuffers, buffers, nearest);
  LIEMEM_FIELD(LoopBuffers, buffers, scales);
  LIEMEM_FIELD(LoopBuffers, buffers, choices);
  LIEMEM_FIELD(LoopBuffers, buffers, neighbours);
  pybind11::class_<LoopLayout> layout(module, "LoopLayout");
  layout.def(pybind11::init<>());
  LIEMEM_FIELD(LoopLayout, layout, input_length);
  LIEMEM_FIELD(LoopLayout, layout, raw_size);
  LIEMEM_FIELD(LoopLayout, layout, weighting);
  LIEMEM_FIELD(LoopLayout, layout, weighting_column);
  LIEMEM_FIELD(LoopLayout, layout, value_column);
  LIEMEM_FIELD(LoopLayout, layout, strength_column);
  LIEMEM_FIELD(LoopLayout, layout, eps);
  LIEMEM_FIELD(LoopLayout, layout, weight_floor);
  LIEMEM_FIELD(LoopLayout, layout, temperature_floor);
  LIEMEM_FIELD(LoopLayout, layout, initial_slots);
  LIEMEM_FIELD(LoopLayout, layout, content);
  LIEMEM_FIELD(LoopLayout, layout, choice_column);
  LIEMEM_FIELD(LoopLayout, layout, gamma_column);
  LIEMEM_FIELD(LoopLayout, layout, distance);
  LIEMEM_FIELD(LoopLayout, layout, small_s);
  LIEMEM_FIELD(LoopLayout, layout, gap_floor);
  LIEMEM_FIELD(LoopLayout, layout, asinh_sq_series);
  LIEMEM_FIELD(LoopLayout, layout, asinh_sq_slope_series);
  pybind11::class_<BackwardBuffers> grads(module, "BackwardBuffers");
  grads.def(pybind11::init<>());
  LIEMEM_FIELD(BackwardBuffers, grads, grad_answer_hidden);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_answer_reads);
  LIEMEM_FIELD(BackwardBuffers, grads, encoder_jacobians);
  LIEMEM_FIELD(BackwardBuffers, grads, answer_jacobians);
  LIEMEM_FIELD(BackwardBuffers, grads, head_output_grads);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_gates);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_outputs);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_keys);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_values);
  LIEMEM_FIELD(BackwardBuffers, grads, grad_strengths);
#undef LIEMEM_FIELD
  pybind11::class_<ForwardLoop>(module, "ForwardLoop")
      .def(pybind11::init<const LoopBuffers&, const LoopLayout&>())
      .def("control", &ForwardLoop::control)
      .def("read_write", &ForwardLoop::read_write)
      .def("run", &ForwardLoop::run)
      .def("run_content", &ForwardLoop::run_content);
  module.def("native_move", &native_move_tensors);
  module.def("backward", &backward);
}
