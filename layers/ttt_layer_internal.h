// layers/ttt_layer_internal.h — small helpers that the TTT layer's sources share (ttt_layer.cpp:
// the forward; ttt_input.cpp: the input side; ttt_decode.cpp: decoding). Not part of the layer's
// interface.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "autograd/ops.h"

namespace ttt::ttt_layer_detail {

inline void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// t in dtype d; undefined stays undefined (a state without inner biases).
inline Tensor cast(const Tensor& t, DType d) { return !t.defined() || t.dtype() == d ? t : to_dtype(t, d); }

// A module's weight / bias, undefined when the configuration has no such module.
template <class M> Tensor weight_of(const std::shared_ptr<M>& m) { return m ? m->weight : Tensor(); }
template <class M> Tensor bias_of(const std::shared_ptr<M>& m) { return m ? m->bias : Tensor(); }

}  // namespace ttt::ttt_layer_detail
