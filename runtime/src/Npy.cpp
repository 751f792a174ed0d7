//===- Npy.cpp - writing NumPy .npy files ---------------------------------===//

#include "xfmr/runtime/Npy.h"

#include "xfmr/runtime/Error.h"
#include "xfmr/runtime/OutputFile.h"


using namespace xfmr::runtime;

std::string xfmr::runtime::npyHeaderFloat32(const std::vector<int64_t> &shape) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0)
      throw Error("npy shape has a negative dimension " +
                  std::to_string(shape[i]));
    if (i > 0)
      dict += ", ";
    dict += std::to_string(shape[i]);
  }
  // A 1-tuple is "(n,)" in Python.
  dict += shape.size() == 1 ? ",), }" : "), }";
  // magic (6) + version (2) + length (2) + dict + '\n', padded with spaces
  // so that the data starts 64-byte aligned, as NumPy writes it.
  size_t total = 10 + dict.size() + 1;
  size_t padded = (total + 63) / 64 * 64;
  dict.append(padded - total, ' ');
  dict += '\n';
  if (dict.size() > 0xFFFF)
    throw Error("npy header too long for format 1.0");
  std::string header("\x93NUMPY\x01\x00", 8);
  header += static_cast<char>(dict.size() & 0xFF);
  header += static_cast<char>(dict.size() >> 8);
  return header + dict;
}

void xfmr::runtime::writeNpyFloat32(const std::string &path, const float *data,
                                    const std::vector<int64_t> &shape) {
  static_assert(sizeof(float) == 4 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
                "'<f4' is written as the host's floats");
  std::string header = npyHeaderFloat32(shape);
  size_t count = 1;
  for (int64_t dim : shape)
    count *= static_cast<size_t>(dim);

  OutputFile file;
  std::string error = file.open(path);
  if (error.empty())
    error = file.write(header.data(), header.size());
  if (error.empty() && count > 0)
    error = file.write(data, count * sizeof(float));
  if (error.empty())
    error = file.commit();
  if (!error.empty())
    throw Error(error);
}
