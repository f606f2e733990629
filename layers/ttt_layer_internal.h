// layers/ttt_layer_internal.h — small helpers that the TTT layer's two sources share
// (ttt_layer.cpp: the forward; ttt_decode.cpp: decoding). Not part of the layer's interface.
#pragma once

#include <stdexcept>
#include <string>

#include "autograd/ops.h"

namespace ttt::ttt_layer_detail {

inline void require(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

// t in dtype d; undefined stays undefined (a state without inner biases).
inline Tensor cast(const Tensor& t, DType d) { return !t.defined() || t.dtype() == d ? t : to_dtype(t, d); }

}  // namespace ttt::ttt_layer_detail
