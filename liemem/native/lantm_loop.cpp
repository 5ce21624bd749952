// The LANTM time loop's kernels for the CPU, built on first use by torch.utils.cpp_extension.
//
// At the paper's sizes (batch 32, 50 cells, 20-wide memory, a few dozen slots) a time step is some forty tensor
// operations of a few microseconds each, and that fixed cost per operation is most of a training step. These
// kernels do a step's elementwise work and its reductions over the memory in plain loops, one call per phase,
// and leave the matrix products to ATen. They compute exactly what liemem/models/lantm_loop.py computes with
// tensor operations (its docstring explains the algorithm), and tests compare the two. The group's head
// movement stays in Python: it is the part a user writes.
//
// Layouts: keys are [B, d, S] (coordinate-major), values [B, S, m], strengths [B, 1, S]; row t of a [T, ...]
// buffer belongs to time step t. Every 2-D argument has unit stride along its last axis.

#include <torch/extension.h>

#include <cmath>
#include <vector>

namespace {

template <typename scalar_t>
inline scalar_t sigmoid(scalar_t x) {
  return scalar_t(1) / (scalar_t(1) + std::exp(-x));
}

// torch.nn.functional.softplus with its defaults (beta 1, threshold 20).
template <typename scalar_t>
inline scalar_t softplus(scalar_t x) {
  return x > scalar_t(20) ? x : std::log1p(std::exp(x));
}

void check_rows(const at::Tensor& tensor, const char* name) {
  TORCH_CHECK(tensor.device().is_cpu(), "lantm_loop: ", name, " must be on the CPU");
  TORCH_CHECK(tensor.size(-1) <= 1 || tensor.stride(-1) == 1, "lantm_loop: ", name, " needs unit stride");
}

// The controller's step: gates, the LSTM cell, and the projection of h_t that feeds the heads and the write.
// Writes h_t into `hidden` and the projection into `output`; `sigmoids`, `candidate`, `new_cell` and
// `squashed` (tanh of the new cell) are kept for the backward pass.
void controller_step(const at::Tensor& projected, const at::Tensor& recurrent, const at::Tensor& recurrent_weight_t,
                     const at::Tensor& cell, at::Tensor gates, at::Tensor sigmoids, at::Tensor candidate,
                     at::Tensor new_cell, at::Tensor squashed, at::Tensor hidden, const at::Tensor& step_bias,
                     const at::Tensor& step_weight_t, at::Tensor output) {
  const int64_t size = cell.size(1);
  at::addmm_out(gates, projected, recurrent, recurrent_weight_t);
  at::sigmoid_out(sigmoids, gates.narrow(1, 0, 3 * size));
  at::tanh_out(candidate, gates.narrow(1, 3 * size, size));
  check_rows(cell, "cell");
  check_rows(new_cell, "new_cell");
  AT_DISPATCH_FLOATING_TYPES(cell.scalar_type(), "controller_step", [&] {
    auto c = cell.accessor<scalar_t, 2>();
    auto s = sigmoids.accessor<scalar_t, 2>();
    auto g = candidate.accessor<scalar_t, 2>();
    auto n = new_cell.accessor<scalar_t, 2>();
    for (int64_t b = 0; b < cell.size(0); ++b) {
      for (int64_t j = 0; j < size; ++j) n[b][j] = s[b][size + j] * c[b][j] + s[b][j] * g[b][j];
    }
  });
  at::tanh_out(squashed, new_cell);
  at::mul_out(hidden, sigmoids.narrow(1, 2 * size, size), squashed);
  at::addmm_out(output, step_bias, hidden, step_weight_t);
}

// The read head's read at one step over the first `slots` slots, then, if `write_slot` >= 0, the write head's
// write of (tanh(value_raw), sigmoid(strength_raw)) at its position into slot `write_slot`.
// `positions` is [B, heads, d] (head 0 reads, head 1 writes); `temperature_raw` is [B, 1], or empty for the
// inverse-square weighting. Kept for the backward pass, per sample: the query, every slot's squared distance
// and kernel factor, the weights, their normaliser, the nearest slot and (softmax) 1 / temperature.
void read_write_step(at::Tensor keys, at::Tensor values, at::Tensor strengths, int64_t slots,
                     const at::Tensor& positions, const at::Tensor& temperature_raw, at::Tensor read,
                     at::Tensor queries, at::Tensor dist2, at::Tensor factors, at::Tensor weights, at::Tensor totals,
                     at::Tensor nearest, at::Tensor scales, int64_t write_slot, const at::Tensor& value_raw,
                     const at::Tensor& strength_raw, double eps, double weight_floor, double temperature_floor) {
  const bool softmax = temperature_raw.numel() > 0;
  for (const at::Tensor* tensor : std::initializer_list<const at::Tensor*>{&keys, &values, &strengths, &queries, &dist2, &factors, &weights, &totals, &nearest,
                             &scales}) {
    TORCH_CHECK(tensor->is_contiguous(), "lantm_loop: read_write_step needs contiguous buffers");
  }
  check_rows(read, "read");
  check_rows(value_raw, "value_raw");
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "read_write_step", [&] {
    const int64_t batch = values.size(0), dim = keys.size(1), width = values.size(2), capacity = values.size(1);
    scalar_t* __restrict__ key_data = keys.data_ptr<scalar_t>();
    scalar_t* __restrict__ value_data = values.data_ptr<scalar_t>();
    scalar_t* __restrict__ strength_data = strengths.data_ptr<scalar_t>();
    const scalar_t* position_data = positions.data_ptr<scalar_t>();
    const int64_t position_batch = positions.stride(0), position_head = positions.stride(1);
    const int64_t position_coordinate = positions.stride(2);
    scalar_t* __restrict__ read_data = read.data_ptr<scalar_t>();
    scalar_t* __restrict__ query_data = queries.data_ptr<scalar_t>();
    scalar_t* __restrict__ dist2_data = dist2.data_ptr<scalar_t>();
    scalar_t* __restrict__ factor_data = factors.data_ptr<scalar_t>();
    scalar_t* __restrict__ weight_data = weights.data_ptr<scalar_t>();
    const int64_t saved_stride = dist2.size(1);
    int64_t* nearest_data = nearest.data_ptr<int64_t>();
    scalar_t* total_data = totals.data_ptr<scalar_t>();
    scalar_t* scale_data = scales.data_ptr<scalar_t>();
    const scalar_t* temperature_data = softmax ? temperature_raw.data_ptr<scalar_t>() : nullptr;
    const int64_t temperature_stride = softmax ? temperature_raw.stride(0) : 0;
    const scalar_t* value_raw_data = value_raw.data_ptr<scalar_t>();
    const scalar_t* strength_raw_data = strength_raw.data_ptr<scalar_t>();
    const int64_t value_raw_stride = value_raw.stride(0), strength_raw_stride = strength_raw.stride(0);
    const int64_t read_stride = read.stride(0);
    const scalar_t e = static_cast<scalar_t>(eps), floor = static_cast<scalar_t>(weight_floor);
    for (int64_t b = 0; b < batch; ++b) {
      const scalar_t* key = key_data + b * dim * capacity;
      const scalar_t* value = value_data + b * capacity * width;
      const scalar_t* strength = strength_data + b * capacity;
      const scalar_t* position = position_data + b * position_batch;
      scalar_t* query = query_data + b * dim;
      scalar_t* d2 = dist2_data + b * saved_stride;
      scalar_t* factor = factor_data + b * saved_stride;
      scalar_t* weight = weight_data + b * saved_stride;
      scalar_t* out = read_data + b * read_stride;
      for (int64_t c = 0; c < dim; ++c) query[c] = position[c * position_coordinate];
      for (int64_t i = 0; i < slots; ++i) d2[i] = 0;
      for (int64_t c = 0; c < dim; ++c) {
        const scalar_t q = query[c];
        const scalar_t* coordinate = key + c * capacity;
#pragma omp simd
        for (int64_t i = 0; i < slots; ++i) {
          const scalar_t diff = q - coordinate[i];
          d2[i] += diff * diff;
        }
      }
      // Strictly smaller, so that ties go to the first slot, as min(dim) gives them.
      int64_t smallest_index = 0;
      for (int64_t i = 1; i < slots; ++i) {
        if (d2[i] < d2[smallest_index]) smallest_index = i;
      }
      nearest_data[b] = smallest_index;
      const scalar_t smallest = d2[smallest_index];
      if (softmax) {
        const scalar_t raw = temperature_data[b * temperature_stride];
        const scalar_t scale = scalar_t(1) / std::max(softplus(raw), static_cast<scalar_t>(temperature_floor));
        scale_data[b] = scale;
        for (int64_t i = 0; i < slots; ++i) factor[i] = std::exp(-(d2[i] - smallest) * scale);
      } else {
#pragma omp simd
        for (int64_t i = 0; i < slots; ++i) factor[i] = (scalar_t(1) / (d2[i] + e)) * (smallest + e);
      }
      scalar_t total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t i = 0; i < slots; ++i) {
        weight[i] = factor[i] * strength[i] + floor;
        total += weight[i];
      }
      total_data[b] = total;
      for (int64_t i = 0; i < slots; ++i) weight[i] /= total;
      for (int64_t j = 0; j < width; ++j) out[j] = 0;
      for (int64_t i = 0; i < slots; ++i) {
        const scalar_t w = weight[i];
        const scalar_t* row = value + i * width;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) out[j] += w * row[j];
      }
      if (write_slot >= 0) {
        const scalar_t* writer = position + position_head;
        const scalar_t* raw_value = value_raw_data + b * value_raw_stride;
        scalar_t* written_key = key_data + b * dim * capacity + write_slot;
        for (int64_t c = 0; c < dim; ++c) written_key[c * capacity] = writer[c * position_coordinate];
        scalar_t* slot = value_data + b * capacity * width + write_slot * width;
        for (int64_t j = 0; j < width; ++j) slot[j] = std::tanh(raw_value[j]);
        strength_data[b * capacity + write_slot] = sigmoid(strength_raw_data[b * strength_raw_stride]);
      }
    }
  });
}

// The forward loop's state for one sequence: every buffer, allocated by the caller, and what the two calls per
// step need, so that a step costs Python two calls with one argument each. Row t of each [T, ...] buffer belongs
// to step t; `recurrent` row t is step t's recurrent input [r_{t-1}; h_{t-1}], `cells` row t the cell before it.
class ForwardLoop {
 public:
  ForwardLoop(int64_t input_length, at::Tensor projected, at::Tensor recurrent, at::Tensor recurrent_weight_t,
              at::Tensor step_weight_t, at::Tensor step_bias, at::Tensor outputs, at::Tensor cells,
              at::Tensor sigmoids, at::Tensor candidates, at::Tensor squashed, at::Tensor keys, at::Tensor values,
              at::Tensor strengths, at::Tensor queries, at::Tensor dist2, at::Tensor factors, at::Tensor weights,
              at::Tensor totals, at::Tensor nearest, at::Tensor scales, int64_t raw_size, int64_t temperature_column,
              int64_t value_column, int64_t strength_column, double eps, double weight_floor,
              double temperature_floor)
      : input_length_(input_length), projected_(projected), recurrent_(recurrent),
        recurrent_weight_t_(recurrent_weight_t), step_weight_t_(step_weight_t), step_bias_(step_bias),
        outputs_(outputs), cells_(cells), sigmoids_(sigmoids), candidates_(candidates), squashed_(squashed),
        keys_(keys), values_(values), strengths_(strengths), queries_(queries), dist2_(dist2), factors_(factors),
        weights_(weights), totals_(totals), nearest_(nearest), scales_(scales), raw_size_(raw_size),
        temperature_column_(temperature_column), value_column_(value_column), strength_column_(strength_column),
        eps_(eps), weight_floor_(weight_floor), temperature_floor_(temperature_floor),
        gates_(at::empty({projected.size(1), projected.size(2)}, projected.options())),
        no_temperature_(at::empty({0}, projected.options())) {
    const int64_t steps = projected.size(0);
    TORCH_CHECK(recurrent.size(0) == steps + 1 && outputs.size(0) == steps && cells.size(0) == steps + 1,
                "lantm_loop: ForwardLoop buffers need one row per step");
    TORCH_CHECK(input_length >= 1 && input_length < steps, "lantm_loop: input_length must be in [1, steps)");
  }

  // Step t's controller: h_t and its projection. Returns the heads' raw outputs [B, heads, raw] (both heads
  // while writing, the read head after).
  at::Tensor control(int64_t t) {
    check_step(t);
    const int64_t width = values_.size(2), size = cells_.size(2), batch = projected_.size(1);
    auto recurrent_row = recurrent_[t];
    auto output = outputs_[t];
    controller_step(projected_[t], recurrent_row, recurrent_weight_t_, cells_[t], gates_, sigmoids_[t],
                    candidates_[t], cells_[t + 1], squashed_[t], recurrent_[t + 1].narrow(1, width, size),
                    step_bias_, step_weight_t_, output);
    const int64_t heads = t < input_length_ ? 2 : 1;
    return output.narrow(1, 0, heads * raw_size_).view({batch, heads, raw_size_});
  }

  // Step t's read, at the read head's new position, and while writing, the write at the write head's.
  void read_write(int64_t t, const at::Tensor& positions) {
    check_step(t);
    TORCH_CHECK(positions.dim() == 3 && positions.size(0) == values_.size(0) && positions.size(2) == keys_.size(1) &&
                    positions.size(1) >= (t < input_length_ ? 2 : 1),
                "lantm_loop: read_write needs head positions [batch, heads, key_dim]");
    TORCH_CHECK(positions.scalar_type() == values_.scalar_type() && positions.device() == values_.device(),
                "lantm_loop: head positions must have the memory's dtype and device");
    const bool writing = t < input_length_;
    const int64_t width = values_.size(2);
    auto output = outputs_[t];
    read_write_step(keys_, values_, strengths_, writing ? t + 1 : input_length_ + 1, positions,
                    temperature_column_ >= 0 ? output.narrow(1, temperature_column_, 1) : no_temperature_,
                    recurrent_[t + 1].narrow(1, 0, width), queries_[t], dist2_[t], factors_[t], weights_[t],
                    totals_[t], nearest_[t], scales_[t], writing ? t + 1 : -1, output.narrow(1, value_column_, width),
                    output.narrow(1, strength_column_, 1), eps_, weight_floor_, temperature_floor_);
  }

 private:
  void check_step(int64_t t) const {
    TORCH_CHECK(t >= 0 && t < projected_.size(0), "lantm_loop: step ", t, " out of range");
  }

  int64_t input_length_;
  at::Tensor projected_, recurrent_, recurrent_weight_t_, step_weight_t_, step_bias_, outputs_, cells_, sigmoids_;
  at::Tensor candidates_, squashed_, keys_, values_, strengths_, queries_, dist2_, factors_, weights_, totals_;
  at::Tensor nearest_, scales_;
  int64_t raw_size_, temperature_column_, value_column_, strength_column_;
  double eps_, weight_floor_, temperature_floor_;
  at::Tensor gates_, no_temperature_;
};

// The whole backward pass through time, in reverse, for what `controller_step` and `read_write_step` computed;
// the heads' movements are differentiated through their Jacobians, taken beforehand by the caller:
// `encoder_jacobians` [L, B, 2, out, in] for the input steps' two heads, `answer_jacobians` [A, B, 1, out, in]
// for the answer steps' read head, with inputs laid out (raw output | state before) and out the state's size.
// Fills `grad_gates` [T, B, 4H], `grad_outputs` [T, B, P] and the memory's gradients (all zero on entry), and
// `head_output_grads` [N, out] if defined (each movement's output gradient, for the group's parameters).
// Returns the gradients of the initial hidden state, cell, read vector and head states.
std::vector<at::Tensor> backward_loop(
    int64_t input_length, const at::Tensor& recurrent_weight, const at::Tensor& step_weight, const at::Tensor& outputs,
    const at::Tensor& sigmoids, const at::Tensor& candidates, const at::Tensor& cells, const at::Tensor& squashed,
    const at::Tensor& keys, const at::Tensor& values, const at::Tensor& strengths, const at::Tensor& queries,
    const at::Tensor& dist2, const at::Tensor& factors, const at::Tensor& weights, const at::Tensor& totals,
    const at::Tensor& nearest, const at::Tensor& scales, const at::Tensor& grad_answer_hidden,
    const at::Tensor& grad_answer_reads, const at::Tensor& encoder_jacobians, const at::Tensor& answer_jacobians,
    at::Tensor head_output_grads, at::Tensor grad_gates, at::Tensor grad_outputs, at::Tensor grad_keys,
    at::Tensor grad_values, at::Tensor grad_strengths, int64_t raw_size, int64_t temperature_column,
    int64_t value_column, int64_t strength_column, double eps, double temperature_floor) {
  const int64_t steps = outputs.size(0), batch = outputs.size(1), size = cells.size(2);
  const int64_t width = values.size(2), dim = keys.size(1), capacity = values.size(1);
  const int64_t out_size = encoder_jacobians.size(3), input_size = encoder_jacobians.size(4);
  const int64_t projection = outputs.size(2);
  const bool softmax = temperature_column >= 0;
  const bool track_heads = head_output_grads.numel() > 0;
  for (const at::Tensor* tensor : std::initializer_list<const at::Tensor*>{&outputs, &sigmoids, &candidates, &cells, &squashed, &keys, &values, &strengths,
                             &queries, &dist2, &factors, &weights, &totals, &nearest, &scales, &encoder_jacobians,
                             &answer_jacobians, &grad_gates, &grad_outputs, &grad_keys, &grad_values,
                             &grad_strengths}) {
    TORCH_CHECK(tensor->is_contiguous(), "lantm_loop: backward_loop needs contiguous buffers");
  }
  TORCH_CHECK(input_size == raw_size + out_size, "lantm_loop: Jacobians must be [out, raw + out]");
  TORCH_CHECK(!track_heads || head_output_grads.is_contiguous(), "lantm_loop: head_output_grads not contiguous");
  auto answer_hidden = grad_answer_hidden.contiguous(), answer_reads = grad_answer_reads.contiguous();
  auto grad_recurrent = at::zeros({batch, width + size}, outputs.options());
  auto grad_hidden = grad_recurrent.narrow(1, width, size);
  auto grad_cell = at::zeros({batch, size}, outputs.options());
  auto grad_heads = at::zeros({batch, 2, out_size}, outputs.options());
  AT_DISPATCH_FLOATING_TYPES(outputs.scalar_type(), "backward_loop", [&] {
    using T = scalar_t;
    const T* output_data = outputs.data_ptr<T>();
    const T* key_data = keys.data_ptr<T>();
    const T* value_data = values.data_ptr<T>();
    const T* strength_data = strengths.data_ptr<T>();
    T* __restrict__ grad_key_data = grad_keys.data_ptr<T>();
    T* __restrict__ grad_value_data = grad_values.data_ptr<T>();
    T* __restrict__ grad_strength_data = grad_strengths.data_ptr<T>();
    T* __restrict__ grad_output_data = grad_outputs.data_ptr<T>();
    T* __restrict__ grad_gate_data = grad_gates.data_ptr<T>();
    T* __restrict__ grad_recurrent_data = grad_recurrent.data_ptr<T>();
    T* __restrict__ grad_cell_data = grad_cell.data_ptr<T>();
    T* __restrict__ grad_head_data = grad_heads.data_ptr<T>();
    T* tracked = track_heads ? head_output_grads.data_ptr<T>() : nullptr;
    const T* dist2_data = dist2.data_ptr<T>();
    const T* factor_data = factors.data_ptr<T>();
    const T* weight_data = weights.data_ptr<T>();
    const T* query_data = queries.data_ptr<T>();
    const T* total_data = totals.data_ptr<T>();
    const int64_t* nearest_data = nearest.data_ptr<int64_t>();
    const T* scale_data = scales.data_ptr<T>();
    const T* answer_hidden_data = answer_hidden.data_ptr<T>();
    const T* answer_read_data = answer_reads.data_ptr<T>();
    const T* encoder_jacobian_data = encoder_jacobians.data_ptr<T>();
    const T* answer_jacobian_data = answer_jacobians.data_ptr<T>();
    const T* sigmoid_data = sigmoids.data_ptr<T>();
    const T* candidate_data = candidates.data_ptr<T>();
    const T* cell_data = cells.data_ptr<T>();
    const T* squashed_data = squashed.data_ptr<T>();
    const T e = static_cast<T>(eps);
    const T scale_ceiling = T(1) / static_cast<T>(temperature_floor);
    std::vector<T> grad_weight(capacity), minus_grad_dist2(capacity), moved(input_size);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const bool writing = t < input_length;
      const int64_t slots = writing ? t + 1 : input_length + 1;
      const int64_t heads = writing ? 2 : 1;
      const int64_t saved = t * batch * capacity;  // row t of the [T, B, S] buffers
      T* grad_output = grad_output_data + t * batch * projection;
      const T* output = output_data + t * batch * projection;
      const T* jacobians = writing ? encoder_jacobian_data + t * batch * 2 * out_size * input_size
                                   : answer_jacobian_data + (t - input_length) * batch * out_size * input_size;
      for (int64_t b = 0; b < batch; ++b) {
        T* grad_read = grad_recurrent_data + b * (width + size);
        T* grad_hidden_row = grad_read + width;
        if (!writing) {
          const T* hidden_in = answer_hidden_data + ((t - input_length) * batch + b) * size;
          const T* read_in = answer_read_data + ((t - input_length) * batch + b) * width;
          for (int64_t j = 0; j < size; ++j) grad_hidden_row[j] += hidden_in[j];
          for (int64_t j = 0; j < width; ++j) grad_read[j] += read_in[j];
        }
        // The read at step t.
        const T* d2 = dist2_data + saved + b * capacity;
        const T* factor = factor_data + saved + b * capacity;
        const T* weight = weight_data + saved + b * capacity;
        const T* query = query_data + (t * batch + b) * dim;
        const T total = total_data[t * batch + b];
        const int64_t near = nearest_data[t * batch + b];
        const T* value = value_data + b * capacity * width;
        const T* strength = strength_data + b * capacity;
        const T* key = key_data + b * dim * capacity;
        T* grad_value = grad_value_data + b * capacity * width;
        T* grad_strength = grad_strength_data + b * capacity;
        T* grad_key = grad_key_data + b * dim * capacity;
        T dot = 0;
        for (int64_t i = 0; i < slots; ++i) {
          const T* row = value + i * width;
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < width; ++j) sum += grad_read[j] * row[j];
          grad_weight[i] = sum;
          dot += sum * weight[i];
        }
        T grad_nearest = 0, grad_temperature = 0;
        const T scale = softmax ? scale_data[t * batch + b] : T(0);
        if (softmax) {
          const T nearest_dist2 = d2[near];
#pragma omp simd reduction(+ : grad_nearest, grad_temperature)
          for (int64_t i = 0; i < slots; ++i) {
            const T grad_unnormalised = (grad_weight[i] - dot) / total;
            minus_grad_dist2[i] = grad_unnormalised * strength[i] * factor[i] * scale;
            grad_nearest += minus_grad_dist2[i];
            grad_temperature += minus_grad_dist2[i] * (d2[i] - nearest_dist2);
            grad_strength[i] += grad_unnormalised * factor[i];
          }
        } else {
#pragma omp simd reduction(+ : grad_nearest)
          for (int64_t i = 0; i < slots; ++i) {
            const T grad_unnormalised = (grad_weight[i] - dot) / total;
            const T grad_factor = grad_unnormalised * strength[i];
            const T slot_scale = T(1) / (d2[i] + e);
            minus_grad_dist2[i] = grad_factor * factor[i] * slot_scale;
            grad_nearest += grad_factor * slot_scale;
            grad_strength[i] += grad_unnormalised * factor[i];
          }
        }
        for (int64_t i = 0; i < slots; ++i) {
          T* grad_row = grad_value + i * width;
          const T w = weight[i];
#pragma omp simd
          for (int64_t j = 0; j < width; ++j) grad_row[j] += w * grad_read[j];
        }
        minus_grad_dist2[near] -= grad_nearest;
        T* grad_head = grad_head_data + b * 2 * out_size;
        for (int64_t d = 0; d < dim; ++d) {
          const T q = query[d];
          const T* coordinate = key + d * capacity;
          T* grad_coordinate = grad_key + d * capacity;
          T sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t i = 0; i < slots; ++i) {
            const T minus_grad_diff = minus_grad_dist2[i] * (q - coordinate[i]);
            sum += minus_grad_diff;
            grad_coordinate[i] += T(2) * minus_grad_diff;
          }
          grad_head[d] += T(-2) * sum;
        }
        T* grad_row = grad_output + b * projection;
        if (softmax) {
          const T clamp = scale < scale_ceiling ? T(1) : T(0);
          const T raw = output[b * projection + temperature_column];
          grad_row[temperature_column] = grad_temperature * scale * clamp * sigmoid(raw);
        }
        // The write after it.
        if (writing) {
          const int64_t slot = t + 1;
          for (int64_t d = 0; d < dim; ++d) grad_head[out_size + d] += grad_key[d * capacity + slot];
          const T* written = value + slot * width;
          const T* grad_written = grad_value + slot * width;
          for (int64_t j = 0; j < width; ++j) {
            grad_row[value_column + j] = grad_written[j] * (T(1) - written[j] * written[j]);
          }
          const T y = strength[slot];
          grad_row[strength_column] = grad_strength[slot] * (T(1) - y) * y;
        }
        // The heads' movements, through their Jacobians.
        for (int64_t h = 0; h < heads; ++h) {
          const T* jacobian = jacobians + (b * heads + h) * out_size * input_size;
          T* grad_state = grad_head + h * out_size;
          if (tracked != nullptr) {
            const int64_t row = writing ? (t * batch + b) * 2 + h
                                        : input_length * batch * 2 + (t - input_length) * batch + b;
            for (int64_t o = 0; o < out_size; ++o) tracked[row * out_size + o] = grad_state[o];
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
      // The step projection, then the LSTM cell, then the recurrent input [r_{t-1}; h_{t-1}].
      grad_hidden.addmm_(grad_outputs[t], step_weight);
      const T* sigmoid_row = sigmoid_data + t * batch * 3 * size;
      const T* candidate_row = candidate_data + t * batch * size;
      const T* cell_row = cell_data + t * batch * size;
      const T* squashed_row = squashed_data + t * batch * size;
      T* grad_gate = grad_gate_data + t * batch * 4 * size;
      for (int64_t b = 0; b < batch; ++b) {
        const T* s = sigmoid_row + b * 3 * size;
        const T* g = candidate_row + b * size;
        const T* c = cell_row + b * size;
        const T* sq = squashed_row + b * size;
        const T* grad_hidden_row = grad_recurrent_data + b * (width + size) + width;
        T* gc = grad_cell_data + b * size;
        T* gg = grad_gate + b * 4 * size;
#pragma omp simd
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
      at::mm_out(grad_recurrent, grad_gates[t], recurrent_weight);
    }
  });
  return {grad_hidden.clone(), grad_cell, grad_recurrent.narrow(1, 0, width).clone(), grad_heads};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("controller_step", &controller_step);
  module.def("read_write_step", &read_write_step);
  pybind11::class_<ForwardLoop>(module, "ForwardLoop")
      .def(pybind11::init<int64_t, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                          at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                          at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t,
                          int64_t, int64_t, int64_t, double, double, double>())
      .def("control", &ForwardLoop::control)
      .def("read_write", &ForwardLoop::read_write);
  module.def("backward_loop", &backward_loop);
}
