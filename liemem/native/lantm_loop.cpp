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
  const bool softmax = temperature_raw.defined() && temperature_raw.numel() > 0;
  check_rows(read, "read");
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "read_write_step", [&] {
    auto k = keys.accessor<scalar_t, 3>();
    auto v = values.accessor<scalar_t, 3>();
    auto st = strengths.accessor<scalar_t, 3>();
    auto p = positions.accessor<scalar_t, 3>();
    auto r = read.accessor<scalar_t, 2>();
    auto q = queries.accessor<scalar_t, 2>();
    auto d2 = dist2.accessor<scalar_t, 2>();
    auto f = factors.accessor<scalar_t, 2>();
    auto w = weights.accessor<scalar_t, 2>();
    auto tot = totals.accessor<scalar_t, 1>();
    auto near = nearest.accessor<int64_t, 1>();
    auto sc = scales.accessor<scalar_t, 1>();
    const int64_t batch = values.size(0), dim = keys.size(1), width = values.size(2);
    const scalar_t e = static_cast<scalar_t>(eps), floor = static_cast<scalar_t>(weight_floor);
    const scalar_t* temperature_row = softmax ? temperature_raw.data_ptr<scalar_t>() : nullptr;
    const int64_t temperature_stride = softmax ? temperature_raw.stride(0) : 0;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t c = 0; c < dim; ++c) q[b][c] = p[b][0][c];
      int64_t smallest_index = 0;
      for (int64_t i = 0; i < slots; ++i) {
        scalar_t sum = 0;
        for (int64_t c = 0; c < dim; ++c) {
          const scalar_t diff = q[b][c] - k[b][c][i];
          sum += diff * diff;
        }
        d2[b][i] = sum;
        // Strictly smaller, so that ties go to the first slot, as min(dim) gives them.
        if (sum < d2[b][smallest_index]) smallest_index = i;
      }
      near[b] = smallest_index;
      const scalar_t smallest = d2[b][smallest_index];
      scalar_t total = 0;
      if (softmax) {
        const scalar_t temperature = softplus(temperature_row[b * temperature_stride]);
        const scalar_t scale = scalar_t(1) / std::max(temperature, static_cast<scalar_t>(temperature_floor));
        sc[b] = scale;
        for (int64_t i = 0; i < slots; ++i) {
          f[b][i] = std::exp(-(d2[b][i] - smallest) * scale);
          w[b][i] = f[b][i] * st[b][0][i] + floor;
          total += w[b][i];
        }
      } else {
        for (int64_t i = 0; i < slots; ++i) {
          f[b][i] = (scalar_t(1) / (d2[b][i] + e)) * (smallest + e);
          w[b][i] = f[b][i] * st[b][0][i] + floor;
          total += w[b][i];
        }
      }
      tot[b] = total;
      for (int64_t i = 0; i < slots; ++i) w[b][i] /= total;
      for (int64_t j = 0; j < width; ++j) r[b][j] = 0;
      for (int64_t i = 0; i < slots; ++i) {
        const scalar_t weight = w[b][i];
        for (int64_t j = 0; j < width; ++j) r[b][j] += weight * v[b][i][j];
      }
      if (write_slot >= 0) {
        auto vr = value_raw.accessor<scalar_t, 2>();
        auto sr = strength_raw.accessor<scalar_t, 2>();
        for (int64_t c = 0; c < dim; ++c) k[b][c][write_slot] = p[b][1][c];
        for (int64_t j = 0; j < width; ++j) v[b][write_slot][j] = std::tanh(vr[b][j]);
        st[b][0][write_slot] = sigmoid(sr[b][0]);
      }
    }
  });
}


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
  const int64_t width = values.size(2), dim = keys.size(1), out_size = encoder_jacobians.size(3);
  const int64_t input_size = encoder_jacobians.size(4);
  const bool softmax = temperature_column >= 0;
  const bool track_heads = head_output_grads.defined() && head_output_grads.numel() > 0;
  auto grad_recurrent = at::zeros({batch, width + size}, outputs.options());
  auto grad_read = grad_recurrent.narrow(1, 0, width);
  auto grad_hidden = grad_recurrent.narrow(1, width, size);
  auto grad_cell = at::zeros({batch, size}, outputs.options());
  auto grad_heads = at::zeros({batch, 2, out_size}, outputs.options());
  auto moved = at::empty({input_size}, outputs.options());
  AT_DISPATCH_FLOATING_TYPES(outputs.scalar_type(), "backward_loop", [&] {
    auto s_all = sigmoids.accessor<scalar_t, 3>();
    auto g_all = candidates.accessor<scalar_t, 3>();
    auto c_all = cells.accessor<scalar_t, 3>();
    auto sq_all = squashed.accessor<scalar_t, 3>();
    auto out_all = outputs.accessor<scalar_t, 3>();
    auto k = keys.accessor<scalar_t, 3>();
    auto v = values.accessor<scalar_t, 3>();
    auto st = strengths.accessor<scalar_t, 3>();
    auto q_all = queries.accessor<scalar_t, 3>();
    auto d2_all = dist2.accessor<scalar_t, 3>();
    auto f_all = factors.accessor<scalar_t, 3>();
    auto w_all = weights.accessor<scalar_t, 3>();
    auto tot_all = totals.accessor<scalar_t, 2>();
    auto near_all = nearest.accessor<int64_t, 2>();
    auto sc_all = scales.accessor<scalar_t, 2>();
    auto gah = grad_answer_hidden.accessor<scalar_t, 3>();
    auto gar = grad_answer_reads.accessor<scalar_t, 3>();
    auto je = encoder_jacobians.accessor<scalar_t, 5>();
    auto ja = answer_jacobians.accessor<scalar_t, 5>();
    auto gg_all = grad_gates.accessor<scalar_t, 3>();
    auto go_all = grad_outputs.accessor<scalar_t, 3>();
    auto gk = grad_keys.accessor<scalar_t, 3>();
    auto gv = grad_values.accessor<scalar_t, 3>();
    auto gs = grad_strengths.accessor<scalar_t, 3>();
    auto gr = grad_recurrent.accessor<scalar_t, 2>();
    auto gc = grad_cell.accessor<scalar_t, 2>();
    auto gh = grad_heads.accessor<scalar_t, 3>();
    auto in = moved.accessor<scalar_t, 1>();
    scalar_t* tracked = track_heads ? head_output_grads.data_ptr<scalar_t>() : nullptr;
    const scalar_t e = static_cast<scalar_t>(eps);
    const scalar_t scale_ceiling = scalar_t(1) / static_cast<scalar_t>(temperature_floor);
    std::vector<scalar_t> grad_weight(input_length + 1), minus_grad_dist2(input_length + 1);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const bool writing = t < input_length;
      const int64_t slots = writing ? t + 1 : input_length + 1;
      const int64_t heads = writing ? 2 : 1;
      auto s = s_all[t];
      auto g = g_all[t];
      auto sq = sq_all[t];
      auto c = c_all[t];
      auto go = go_all[t];
      auto gg = gg_all[t];
      for (int64_t b = 0; b < batch; ++b) {
        scalar_t* grad_read_row = &gr[b][0];
        scalar_t* grad_hidden_row = &gr[b][width];
        if (!writing) {
          for (int64_t j = 0; j < size; ++j) grad_hidden_row[j] += gah[t - input_length][b][j];
          for (int64_t j = 0; j < width; ++j) grad_read_row[j] += gar[t - input_length][b][j];
        }
        // The read at step t.
        auto d2 = d2_all[t][b];
        auto f = f_all[t][b];
        auto w = w_all[t][b];
        const scalar_t total = tot_all[t][b];
        const int64_t near = near_all[t][b];
        scalar_t dot = 0;
        for (int64_t i = 0; i < slots; ++i) {
          scalar_t sum = 0;
          for (int64_t j = 0; j < width; ++j) sum += grad_read_row[j] * v[b][i][j];
          grad_weight[i] = sum;
          dot += sum * w[i];
        }
        scalar_t grad_nearest = 0, grad_temperature = 0;
        const scalar_t scale = softmax ? sc_all[t][b] : scalar_t(0);
        for (int64_t i = 0; i < slots; ++i) {
          const scalar_t grad_unnormalised = (grad_weight[i] - dot) / total;
          const scalar_t grad_factor = grad_unnormalised * st[b][0][i];
          const scalar_t slot_scale = softmax ? scale : scalar_t(1) / (d2[i] + e);
          minus_grad_dist2[i] = grad_factor * f[i] * slot_scale;
          if (softmax) {
            grad_nearest += minus_grad_dist2[i];
            grad_temperature += minus_grad_dist2[i] * (d2[i] - d2[near]);
          } else {
            grad_nearest += grad_factor * slot_scale;
          }
          gs[b][0][i] += grad_unnormalised * f[i];
          for (int64_t j = 0; j < width; ++j) gv[b][i][j] += w[i] * grad_read_row[j];
        }
        minus_grad_dist2[near] -= grad_nearest;
        for (int64_t d = 0; d < dim; ++d) {
          const scalar_t query = q_all[t][b][d];
          scalar_t sum = 0;
          for (int64_t i = 0; i < slots; ++i) {
            const scalar_t minus_grad_diff = minus_grad_dist2[i] * (query - k[b][d][i]);
            sum += minus_grad_diff;
            gk[b][d][i] += scalar_t(2) * minus_grad_diff;
          }
          gh[b][0][d] += scalar_t(-2) * sum;
        }
        if (softmax) {
          const scalar_t clamp = scale < scale_ceiling ? scalar_t(1) : scalar_t(0);
          go[b][temperature_column] = grad_temperature * scale * clamp * sigmoid(out_all[t][b][temperature_column]);
        }
        // The write after it.
        if (writing) {
          const int64_t slot = t + 1;
          for (int64_t d = 0; d < dim; ++d) gh[b][1][d] += gk[b][d][slot];
          for (int64_t j = 0; j < width; ++j) {
            const scalar_t y = v[b][slot][j];
            go[b][value_column + j] = gv[b][slot][j] * (scalar_t(1) - y * y);
          }
          const scalar_t y = st[b][0][slot];
          go[b][strength_column] = gs[b][0][slot] * (scalar_t(1) - y) * y;
        }
        // The heads' movements, through their Jacobians.
        for (int64_t h = 0; h < heads; ++h) {
          auto jacobian = writing ? je[t][b][h] : ja[t - input_length][b][0];
          if (tracked != nullptr) {
            const int64_t row = writing ? (t * batch + b) * 2 + h
                                        : input_length * batch * 2 + (t - input_length) * batch + b;
            for (int64_t o = 0; o < out_size; ++o) tracked[row * out_size + o] = gh[b][h][o];
          }
          for (int64_t i = 0; i < input_size; ++i) in[i] = 0;
          for (int64_t o = 0; o < out_size; ++o) {
            const scalar_t grad = gh[b][h][o];
            for (int64_t i = 0; i < input_size; ++i) in[i] += grad * jacobian[o][i];
          }
          for (int64_t r = 0; r < raw_size; ++r) go[b][h * raw_size + r] = in[r];
          for (int64_t o = 0; o < out_size; ++o) gh[b][h][o] = in[raw_size + o];
        }
      }
      // The step projection, then the LSTM cell, then the recurrent input [r_{t-1}; h_{t-1}].
      grad_hidden.addmm_(grad_outputs[t], step_weight);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t j = 0; j < size; ++j) {
          const scalar_t input_gate = s[b][j], forget_gate = s[b][size + j], output_gate = s[b][2 * size + j];
          const scalar_t candidate = g[b][j], squash = sq[b][j], hidden_grad = gr[b][width + j];
          const scalar_t cell_grad = gc[b][j] + hidden_grad * output_gate * (scalar_t(1) - squash * squash);
          gg[b][j] = cell_grad * candidate * (scalar_t(1) - input_gate) * input_gate;
          gg[b][size + j] = cell_grad * c[b][j] * (scalar_t(1) - forget_gate) * forget_gate;
          gg[b][2 * size + j] = hidden_grad * squash * (scalar_t(1) - output_gate) * output_gate;
          gg[b][3 * size + j] = cell_grad * input_gate * (scalar_t(1) - candidate * candidate);
          gc[b][j] = cell_grad * forget_gate;
        }
      }
      at::mm_out(grad_recurrent, grad_gates[t], recurrent_weight);
    }
  });
  return {grad_hidden.clone(), grad_cell, grad_read.clone(), grad_heads};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("controller_step", &controller_step);
  module.def("read_write_step", &read_write_step);
  module.def("backward_loop", &backward_loop);
}
