// layers/embedding.cpp — see embedding.h.
#include "layers/embedding.h"

#include <stdexcept>

#include "autograd/ops.h"

namespace ttt {

Embedding::Embedding(int64_t n, int64_t d, Generator& g, double std) : num_embeddings(n), dim(d) {
  if (n <= 0 || d <= 0)
    throw std::invalid_argument("Embedding: sizes must be positive, got " + std::to_string(n) + " x " +
                                std::to_string(d));
  weight = register_parameter("weight", init_normal({n, d}, g, std));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight, ids); }

Tensor Embedding::attend(const Tensor& h) const {
  if (h.dim() < 1 || h.shape().back() != dim)
    throw std::invalid_argument("Embedding::attend: expected [..., " + std::to_string(dim) + "], got " +
                                h.shape().str());
  Shape out = h.shape();
  out[out.size() - 1] = num_embeddings;
  return reshape(matmul(reshape(h, {-1, dim}), transpose(weight, 0, 1)), out);
}

}  // namespace ttt
