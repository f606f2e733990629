// layers/embedding.h — token embedding table [vocab, d], init N(0, std) (official
// initializer_range 0.02). With tied embeddings the language model reuses `weight` as its output
// head: logits = h weightᵀ (tie_word_embeddings=True in every official JAX config).
#pragma once

#include "layers/module.h"

namespace ttt {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& g, double std = 0.02);
  // ids: int64 of any shape -> [..., dim]. Out-of-range ids are an error (the op checks).
  Tensor forward(const Tensor& ids) const;
  // h [..., dim] -> [..., num_embeddings]: the tied output head.
  Tensor attend(const Tensor& h) const;

  int64_t num_embeddings, dim;
  Tensor weight;  // [num_embeddings, dim]
};

}  // namespace ttt
