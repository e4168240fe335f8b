// Data sets from NumPy: an .npz archive (np.savez or np.savez_compressed) holding x_train,
// y_train, x_test and y_test, read as the IDX files are (data/idx.h): every
// problem a DataError naming the file, the archive's directory and each array's header checked
// before any payload is allocated.
//
// Features: uint8 arrays are images, standardized as IDX images are; float32 arrays are used as
// given (no scaling); float64 arrays are converted to float32 once. Shape (N, F) is N examples of
// F features (rows 1, cols F), (N, H, W) N images of H x W. Labels: any integer dtype, shape (N,),
// each in [0, num_classes). Little-endian, C order (fortran_order False), format versions 1-3;
// members stored or deflated, zip64 records read. Other archive members are ignored.
#pragma once

#include <filesystem>

#include "dropkit/data/idx.h"

namespace dropkit::data {

// A path that names an .npz archive rather than an MNIST-style directory: it ends in ".npz", or
// it exists and is not a directory.
bool is_npz_path(const std::filesystem::path& path);

// The split's examples (x_train/y_train or x_test/y_test). The test split is required, as in an
// MNIST-style directory: a run reports test accuracy every epoch (docs/guide.md).
Dataset load_npz_split(const std::filesystem::path& file, MnistSplit split, int num_classes = 10);
// The split's shape from the archive's directory and the arrays' headers alone.
DatasetShape peek_npz_split(const std::filesystem::path& file, MnistSplit split);
// Both splits, their shapes checked against each other before either payload is read.
TrainTest load_npz(const std::filesystem::path& file, int num_classes = 10);

}  // namespace dropkit::data
