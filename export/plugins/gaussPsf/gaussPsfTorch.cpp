/*
 * gaussPsfTorch.cpp - PyTorch CUDA extension binding of the GaussPSF launchers (for GPU training).
 *
 * Built on demand by export/psf_ext.py (torch.utils.cpp_extension.load) together with gaussPsfKernel.cu.
 * The autograd wrapper lives in Python (export.psf_ext.gauss_psf_cuda); these functions only check
 * tensors and launch on the current CUDA stream.
 *   forward(image (N,C,H,W) f32|f16, sigma (N,1,H,W) same dtype, radius) -> (N,C,H,W) same dtype
 *   backward(image f32, sigma f32, grad_output f32, radius) -> [grad_image (N,C,H,W), grad_sigma (N,1,H,W)]
 */
#include "gaussPsfKernel.h"
#include "gaussPsfMath.h"

#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace
{

void checkPair(torch::Tensor const& image, torch::Tensor const& sigma, int64_t radius)
{
    TORCH_CHECK_TYPE(image.is_cuda() && sigma.is_cuda(), "gauss_psf: image and sigma must be CUDA tensors");
    TORCH_CHECK_VALUE(image.dim() == 4, "gauss_psf: image must be (N, C, H, W), got ", image.sizes());
    TORCH_CHECK_VALUE(sigma.dim() == 4 && sigma.size(1) == 1 && sigma.size(0) == image.size(0)
            && sigma.size(2) == image.size(2) && sigma.size(3) == image.size(3),
        "gauss_psf: sigma must be (N, 1, H, W) matching image ", image.sizes(), ", got ", sigma.sizes());
    TORCH_CHECK_TYPE(image.scalar_type() == sigma.scalar_type(), "gauss_psf: image and sigma dtypes differ");
    TORCH_CHECK_VALUE(image.get_device() == sigma.get_device(), "gauss_psf: image and sigma on different devices");
    TORCH_CHECK_VALUE(radius >= 0 && radius <= gausspsf::kMaxRadius, "gauss_psf: radius must be in [0, ",
        gausspsf::kMaxRadius, "], got ", radius);
    TORCH_CHECK_VALUE(image.size(0) <= INT32_MAX && image.numel() / std::max<int64_t>(image.size(0), 1) <= INT32_MAX,
        "gauss_psf: tensor too large");
}

void checkStatus(cudaError_t status)
{
    TORCH_CHECK(status == cudaSuccess, "gauss_psf: CUDA launch failed: ", cudaGetErrorString(status));
}

torch::Tensor forward(torch::Tensor image, torch::Tensor sigma, int64_t radius)
{
    checkPair(image, sigma, radius);
    c10::cuda::CUDAGuard const guard(image.device());
    image = image.contiguous();
    sigma = sigma.contiguous();
    auto output = torch::empty_like(image);
    auto const n = static_cast<int32_t>(image.size(0));
    auto const c = static_cast<int32_t>(image.size(1));
    auto const h = static_cast<int32_t>(image.size(2));
    auto const w = static_cast<int32_t>(image.size(3));
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
    if (image.scalar_type() == torch::kFloat32)
    {
        checkStatus(gausspsf::gaussPsfForward(image.data_ptr<float>(), sigma.data_ptr<float>(),
            output.data_ptr<float>(), n, c, h, w, static_cast<int32_t>(radius), stream));
    }
    else if (image.scalar_type() == torch::kFloat16)
    {
        checkStatus(gausspsf::gaussPsfForward(reinterpret_cast<__half const*>(image.data_ptr<at::Half>()),
            reinterpret_cast<__half const*>(sigma.data_ptr<at::Half>()),
            reinterpret_cast<__half*>(output.data_ptr<at::Half>()), n, c, h, w, static_cast<int32_t>(radius),
            stream));
    }
    else
    {
        TORCH_CHECK_TYPE(false, "gauss_psf: dtype must be float32 or float16, got ", image.scalar_type());
    }
    return output;
}

std::vector<torch::Tensor> backward(torch::Tensor image, torch::Tensor sigma, torch::Tensor gradOutput, int64_t radius)
{
    checkPair(image, sigma, radius);
    TORCH_CHECK_TYPE(image.scalar_type() == torch::kFloat32 && gradOutput.scalar_type() == torch::kFloat32,
        "gauss_psf backward: tensors must be float32");
    TORCH_CHECK_VALUE(gradOutput.sizes() == image.sizes(), "gauss_psf backward: grad_output shape ",
        gradOutput.sizes(), " differs from image ", image.sizes());
    c10::cuda::CUDAGuard const guard(image.device());
    image = image.contiguous();
    sigma = sigma.contiguous();
    gradOutput = gradOutput.contiguous();
    auto gradImage = torch::empty_like(image);
    auto gradSigma = torch::empty_like(sigma);
    auto const n = static_cast<int32_t>(image.size(0));
    auto const c = static_cast<int32_t>(image.size(1));
    auto const h = static_cast<int32_t>(image.size(2));
    auto const w = static_cast<int32_t>(image.size(3));
    size_t const bytes = gausspsf::gaussPsfBackwardWorkspaceSize(n, h, w);
    auto workspace = torch::empty({static_cast<int64_t>(bytes)}, image.options().dtype(torch::kUInt8));
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
    checkStatus(gausspsf::gaussPsfBackward(image.data_ptr<float>(), sigma.data_ptr<float>(),
        gradOutput.data_ptr<float>(), gradImage.data_ptr<float>(), gradSigma.data_ptr<float>(),
        bytes > 0 ? workspace.data_ptr() : nullptr, n, c, h, w, static_cast<int32_t>(radius), stream));
    return {gradImage, gradSigma};
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.doc() = "GaussPSF CUDA kernels (gather-form spatially varying Gaussian PSF)";
    m.def("forward", &forward, "GaussPSF forward (CUDA)", py::arg("image"), py::arg("sigma"), py::arg("radius"));
    m.def("backward", &backward, "GaussPSF backward (CUDA, fp32)", py::arg("image"), py::arg("sigma"),
        py::arg("grad_output"), py::arg("radius"));
    m.attr("max_radius") = gausspsf::kMaxRadius;
}
