/*
 * gaussPsfOrt.cpp - libgausspsf_ort.so: GaussPSF as a native onnxruntime custom op (CPU), plus a C ABI.
 *
 * onnxruntime loads the library with SessionOptions.register_custom_ops_library(path) and calls
 * RegisterCustomOps, which adds the op GaussPSF (inputs image (N, C, H, W) and sigma (N, 1, H, W)
 * float32, integer attribute radius, output (N, C, H, W)) in the domain "ai.onnx.contrib", the domain
 * of the onnxruntime flavour of the physics graph (export/targets.py). The computation is
 * gaussPsfCpu.h (the factorised form of gaussPsfMath.h's per-pixel math) on onnxruntime's intra-op
 * thread pool (KernelContext_ParallelFor, so SessionOptions.intra_op_num_threads applies).
 *
 * Only the onnxruntime C API is used, at API version 17 (onnxruntime >= 1.17), through the function
 * table onnxruntime hands to RegisterCustomOps: the library does not link libonnxruntime, so it loads
 * into any onnxruntime >= 1.17 (the pip wheel, a distribution package) and, for the C ABI below, into
 * processes without onnxruntime at all.
 *
 * C ABI (ctypes; tests and benchmarks): gpsf_cpu_forward_f32 runs the same code on `threads` std::threads,
 * gpsf_cpu_reference_f32 runs gaussPsfMath.h's forwardPixel (the CUDA kernel's per-pixel code) on one
 * thread. Both return 0 or an error code, with gpsf_cpu_last_error() describing it.
 */
#include "gaussPsfCpu.h"

#include <onnxruntime_c_api.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#define GPSF_ORT_EXPORT extern "C" __attribute__((visibility("default")))

namespace
{

//! The onnxruntime C API version this library is written against (KernelContext_ParallelFor: 1.17).
constexpr uint32_t kApiVersion = 17;
constexpr char const* kDomain = "ai.onnx.contrib";
constexpr char const* kOpName = "GaussPSF";
constexpr int32_t kAbiVersion = 1;

OrtApi const* gApi = nullptr;
std::mutex gDomainsMutex;
std::vector<OrtCustomOpDomain*> gDomains; // kept alive for the sessions that use them

thread_local std::string tLastError;

//! Runs fn(i) for i < total on onnxruntime's thread pool, collecting the first exception.
struct ParallelJob
{
    void (*body)(gausspsf::cpu::Forward&, size_t);
    gausspsf::cpu::Forward* forward;
    std::atomic<bool> failed{false};
    std::mutex mutex;
    std::string error;

    static void run(void* self, size_t i)
    {
        auto* job = static_cast<ParallelJob*>(self);
        if (job->failed.load(std::memory_order_relaxed))
        {
            return;
        }
        try
        {
            job->body(*job->forward, i);
        }
        catch (std::exception const& e)
        {
            job->fail(e.what());
        }
        catch (...)
        {
            job->fail("unknown error");
        }
    }

    void fail(char const* message)
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failed.exchange(true))
        {
            error = message;
        }
    }
};

void accumulateTask(gausspsf::cpu::Forward& f, size_t i)
{
    f.accumulate(i);
}

void finishTask(gausspsf::cpu::Forward& f, size_t i)
{
    f.finishRow(i);
}

struct Kernel
{
    int radius;
};

OrtStatus* statusFromMessage(OrtErrorCode code, std::string const& message)
{
    return gApi->CreateStatus(code, message.c_str());
}

#define GPSF_ORT_CHECK(expr)                                                                                          \
    do                                                                                                                 \
    {                                                                                                                  \
        OrtStatus* status_ = (expr);                                                                                   \
        if (status_ != nullptr)                                                                                        \
        {                                                                                                              \
            return status_;                                                                                            \
        }                                                                                                              \
    } while (0)

//! Shape of a float tensor input; error status for another element type.
OrtStatus* inputShape(OrtValue const* value, char const* name, std::vector<int64_t>& shape)
{
    OrtTensorTypeAndShapeInfo* info = nullptr;
    GPSF_ORT_CHECK(gApi->GetTensorTypeAndShape(value, &info));
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t rank = 0;
    OrtStatus* status = gApi->GetTensorElementType(info, &type);
    if (status == nullptr)
    {
        status = gApi->GetDimensionsCount(info, &rank);
    }
    if (status == nullptr)
    {
        shape.assign(rank, 0);
        status = gApi->GetDimensions(info, shape.data(), rank);
    }
    gApi->ReleaseTensorTypeAndShapeInfo(info);
    if (status == nullptr && type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    {
        status = statusFromMessage(ORT_INVALID_ARGUMENT, std::string("GaussPSF: input ") + name + " must be float32");
    }
    return status;
}

std::string shapeText(std::vector<int64_t> const& s)
{
    std::string out = "(";
    for (size_t i = 0; i < s.size(); ++i)
    {
        out += (i ? ", " : "") + std::to_string(s[i]);
    }
    return out + ")";
}

OrtStatus* ORT_API_CALL createKernel(OrtCustomOp const* /*op*/, OrtApi const* /*api*/, OrtKernelInfo const* info,
    void** kernel)
{
    int64_t radius = -1;
    OrtStatus* status = gApi->KernelInfoGetAttribute_int64(info, "radius", &radius);
    if (status != nullptr)
    {
        gApi->ReleaseStatus(status);
        return statusFromMessage(ORT_INVALID_ARGUMENT, "GaussPSF: the node needs an integer attribute 'radius'");
    }
    if (radius < 0 || radius > gausspsf::kMaxRadius)
    {
        return statusFromMessage(ORT_INVALID_ARGUMENT,
            "GaussPSF: radius must be in [0, " + std::to_string(gausspsf::kMaxRadius) + "], got "
                + std::to_string(radius));
    }
    try
    {
        *kernel = new Kernel{static_cast<int>(radius)};
    }
    catch (std::bad_alloc const&)
    {
        return statusFromMessage(ORT_FAIL, "GaussPSF: out of memory");
    }
    return nullptr;
}

OrtStatus* ORT_API_CALL computeKernel(void* opKernel, OrtKernelContext* context)
{
    auto const* kernel = static_cast<Kernel const*>(opKernel);
    OrtValue const* image = nullptr;
    OrtValue const* sigma = nullptr;
    GPSF_ORT_CHECK(gApi->KernelContext_GetInput(context, 0, &image));
    GPSF_ORT_CHECK(gApi->KernelContext_GetInput(context, 1, &sigma));
    std::vector<int64_t> ishape;
    std::vector<int64_t> sshape;
    GPSF_ORT_CHECK(inputShape(image, "image", ishape));
    GPSF_ORT_CHECK(inputShape(sigma, "sigma", sshape));
    if (ishape.size() != 4 || sshape.size() != 4 || sshape[0] != ishape[0] || sshape[1] != 1 || sshape[2] != ishape[2]
        || sshape[3] != ishape[3])
    {
        return statusFromMessage(ORT_INVALID_ARGUMENT,
            "GaussPSF: image must be (N, C, H, W) and sigma (N, 1, H, W), got " + shapeText(ishape) + " and "
                + shapeText(sshape));
    }
    if (ishape[1] > INT_MAX || ishape[2] > INT_MAX || ishape[3] > INT_MAX)
    {
        return statusFromMessage(ORT_INVALID_ARGUMENT, "GaussPSF: dimensions too large: " + shapeText(ishape));
    }
    OrtValue* output = nullptr;
    GPSF_ORT_CHECK(gApi->KernelContext_GetOutput(context, 0, ishape.data(), ishape.size(), &output));
    int64_t const count = ishape[0] * ishape[1] * ishape[2] * ishape[3];
    if (count == 0)
    {
        return nullptr;
    }
    void const* imageData = nullptr;
    void const* sigmaData = nullptr;
    void* outData = nullptr;
    GPSF_ORT_CHECK(gApi->GetTensorMutableData(const_cast<OrtValue*>(image), const_cast<void**>(&imageData)));
    GPSF_ORT_CHECK(gApi->GetTensorMutableData(const_cast<OrtValue*>(sigma), const_cast<void**>(&sigmaData)));
    GPSF_ORT_CHECK(gApi->GetTensorMutableData(output, &outData));
    gausspsf::cpu::Problem const problem{static_cast<float const*>(imageData), static_cast<float const*>(sigmaData),
        static_cast<float*>(outData), ishape[0], static_cast<int>(ishape[1]), static_cast<int>(ishape[2]),
        static_cast<int>(ishape[3]), kernel->radius};
    try
    {
        gausspsf::cpu::Forward forward(problem);
        ParallelJob accumulate;
        accumulate.body = accumulateTask;
        accumulate.forward = &forward;
        GPSF_ORT_CHECK(gApi->KernelContext_ParallelFor(context, ParallelJob::run, forward.taskCount(), 0, &accumulate));
        if (accumulate.failed)
        {
            return statusFromMessage(ORT_FAIL, accumulate.error);
        }
        ParallelJob finish;
        finish.body = finishTask;
        finish.forward = &forward;
        GPSF_ORT_CHECK(gApi->KernelContext_ParallelFor(context, ParallelJob::run, forward.rowCount(), 0, &finish));
        if (finish.failed)
        {
            return statusFromMessage(ORT_FAIL, finish.error);
        }
    }
    catch (std::invalid_argument const& e)
    {
        return statusFromMessage(ORT_INVALID_ARGUMENT, e.what());
    }
    catch (std::bad_alloc const&)
    {
        return statusFromMessage(ORT_FAIL, "GaussPSF: out of memory for " + shapeText(ishape));
    }
    catch (std::exception const& e)
    {
        return statusFromMessage(ORT_FAIL, e.what());
    }
    return nullptr;
}

void ORT_API_CALL destroyKernel(void* opKernel)
{
    delete static_cast<Kernel*>(opKernel);
}

struct GaussPsfOp : OrtCustomOp
{
    GaussPsfOp()
        : OrtCustomOp{}
    {
        version = kApiVersion;
        CreateKernel = nullptr;
        GetName = [](OrtCustomOp const*) -> char const* { return kOpName; };
        GetExecutionProviderType = [](OrtCustomOp const*) -> char const* { return nullptr; }; // CPU
        GetInputType = [](OrtCustomOp const*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; };
        GetInputTypeCount = [](OrtCustomOp const*) -> size_t { return 2; };
        GetOutputType = [](OrtCustomOp const*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; };
        GetOutputTypeCount = [](OrtCustomOp const*) -> size_t { return 1; };
        KernelCompute = nullptr;
        KernelDestroy = destroyKernel;
        GetInputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetOutputCharacteristic = [](OrtCustomOp const*, size_t) { return INPUT_OUTPUT_REQUIRED; };
        GetInputMemoryType = [](OrtCustomOp const*, size_t) { return OrtMemTypeDefault; };
        GetVariadicInputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicInputHomogeneity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputMinArity = [](OrtCustomOp const*) { return 1; };
        GetVariadicOutputHomogeneity = [](OrtCustomOp const*) { return 1; };
        CreateKernelV2 = createKernel;
        KernelComputeV2 = computeKernel;
        InferOutputShapeFn = nullptr;
        GetStartVersion = [](OrtCustomOp const*) { return 1; };
        GetEndVersion = [](OrtCustomOp const*) { return INT_MAX; };
    }
};

GaussPsfOp const gOp;

//! Runs a Forward on `threads` std::threads (C ABI path, no onnxruntime).
void runWithThreads(gausspsf::cpu::Forward& forward, int threads)
{
    for (int stage = 0; stage < 2; ++stage)
    {
        size_t const total = stage == 0 ? forward.taskCount() : forward.rowCount();
        ParallelJob job;
        job.body = stage == 0 ? accumulateTask : finishTask;
        job.forward = &forward;
        std::atomic<size_t> next{0};
        auto worker = [&]() {
            for (size_t i = next.fetch_add(1); i < total; i = next.fetch_add(1))
            {
                ParallelJob::run(&job, i);
            }
        };
        int const extra = std::max(0, std::min(threads, static_cast<int>(std::min<size_t>(total, 256))) - 1);
        std::vector<std::thread> pool;
        pool.reserve(static_cast<size_t>(extra));
        for (int i = 0; i < extra; ++i)
        {
            pool.emplace_back(worker);
        }
        worker();
        for (auto& t : pool)
        {
            t.join();
        }
        if (job.failed)
        {
            throw std::runtime_error(job.error);
        }
    }
}

int32_t fail(int32_t code, char const* message)
{
    tLastError = message;
    return code;
}

} // namespace

GPSF_ORT_EXPORT OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, OrtApiBase const* apiBase)
{
    OrtApi const* api = apiBase->GetApi(kApiVersion);
    if (api == nullptr)
    {
        OrtApi const* oldest = apiBase->GetApi(1);
        std::string const message = std::string("libgausspsf_ort needs onnxruntime >= 1.17, this is ")
            + apiBase->GetVersionString();
        return oldest != nullptr ? oldest->CreateStatus(ORT_FAIL, message.c_str()) : nullptr;
    }
    gApi = api;
    OrtCustomOpDomain* domain = nullptr;
    GPSF_ORT_CHECK(api->CreateCustomOpDomain(kDomain, &domain));
    OrtStatus* status = api->CustomOpDomain_Add(domain, &gOp);
    if (status == nullptr)
    {
        status = api->AddCustomOpDomain(options, domain);
    }
    if (status != nullptr)
    {
        api->ReleaseCustomOpDomain(domain);
        return status;
    }
    std::lock_guard<std::mutex> lock(gDomainsMutex);
    gDomains.push_back(domain); // sessions hold pointers to it: never released while the library is loaded
    return nullptr;
}

GPSF_ORT_EXPORT int32_t gpsf_cpu_abi_version(void)
{
    return kAbiVersion;
}

GPSF_ORT_EXPORT int32_t gpsf_cpu_api_version(void)
{
    return static_cast<int32_t>(kApiVersion);
}

GPSF_ORT_EXPORT char const* gpsf_cpu_last_error(void)
{
    return tLastError.c_str();
}

GPSF_ORT_EXPORT int32_t gpsf_cpu_forward_f32(float const* image, float const* sigma, float* output, int64_t n, int32_t c,
    int32_t h, int32_t w, int32_t radius, int32_t threads)
{
    try
    {
        gausspsf::cpu::Forward forward(gausspsf::cpu::Problem{image, sigma, output, n, c, h, w, radius});
        runWithThreads(forward, std::max(1, threads));
    }
    catch (std::invalid_argument const& e)
    {
        return fail(1, e.what());
    }
    catch (std::exception const& e)
    {
        return fail(2, e.what());
    }
    tLastError.clear();
    return 0;
}

GPSF_ORT_EXPORT int32_t gpsf_cpu_reference_f32(float const* image, float const* sigma, float* output, int64_t n,
    int32_t c, int32_t h, int32_t w, int32_t radius)
{
    try
    {
        gausspsf::cpu::forwardReference(gausspsf::cpu::Problem{image, sigma, output, n, c, h, w, radius});
    }
    catch (std::invalid_argument const& e)
    {
        return fail(1, e.what());
    }
    catch (std::exception const& e)
    {
        return fail(2, e.what());
    }
    tLastError.clear();
    return 0;
}
