/*
 * gaussPsfPluginCheck.cpp - self-check of libgausspsf_trt.so through the TensorRT plugin interfaces.
 *
 * Drives the plugin the way TensorRT does (getCreators -> IPluginCreatorV3One -> IPluginV3 capabilities),
 * with a recording logger installed through setLoggerFinder, and checks every answer. Without a GPU the
 * enqueue check only verifies that a failed launch is reported (returns -1 and logs); with a GPU it runs
 * the plugin's enqueue (fp32 and fp16) and the backward launcher and compares them with libgausspsf_host.
 *
 * Output: one line per check, "PASS name", "FAIL name: detail" or "SKIP name: reason".
 * Exit status: 0 when nothing failed, 1 otherwise.
 */
#include "NvInferRuntime.h"
#include "gaussPsfHost.h"
#include "gaussPsfKernel.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(ILoggerFinder* finder);

namespace
{

int gFailures = 0;

void check(bool ok, char const* name, std::string const& detail = {})
{
    if (ok)
    {
        std::printf("PASS %s\n", name);
    }
    else
    {
        ++gFailures;
        std::printf("FAIL %s: %s\n", name, detail.c_str());
    }
}

class RecordingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kERROR)
        {
            errors.emplace_back(msg);
        }
    }
    //! True if an error was logged since the last call, and clears the record.
    bool takeError(char const* needle)
    {
        bool found = false;
        for (auto const& e : errors)
        {
            found = found || e.find(needle) != std::string::npos;
        }
        errors.clear();
        return found;
    }
    std::vector<std::string> errors;
};

class Finder : public ILoggerFinder
{
public:
    explicit Finder(ILogger* logger)
        : mLogger(logger)
    {
    }
    ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    ILogger* mLogger;
};

class FakeExprBuilder : public IExprBuilder
{
public:
    FakeExprBuilder()
    {
        mImpl = nullptr; // never called: GaussPSF's output shape is its first input's shape
    }
    ~FakeExprBuilder() noexcept override = default;
};

Dims dims4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    Dims d{};
    d.nbDims = 4;
    d.d[0] = n;
    d.d[1] = c;
    d.d[2] = h;
    d.d[3] = w;
    return d;
}

DynamicPluginTensorDesc dynDesc(Dims const& dims, DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc desc{};
    desc.desc.dims = dims;
    desc.desc.type = type;
    desc.desc.format = format;
    desc.min = dims;
    desc.max = dims;
    desc.opt = dims;
    return desc;
}

IPluginV3* createWithRadius(IPluginCreatorV3One* creator, void const* data, PluginFieldType type, TensorRTPhase phase)
{
    PluginField field("radius", data, type, 1);
    PluginFieldCollection fc{1, &field};
    return creator->createPlugin("gauss_psf", &fc, phase);
}

int32_t serializedRadius(IPluginV3* plugin)
{
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fields = runtime->getFieldsToSerialize();
    if (fields == nullptr || fields->nbFields != 1 || std::strcmp(fields->fields[0].name, "radius") != 0
        || fields->fields[0].type != PluginFieldType::kINT32 || fields->fields[0].length != 1)
    {
        return -1000;
    }
    return *static_cast<int32_t const*>(fields->fields[0].data);
}

float halfBitsToFloat(uint16_t bits)
{
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
}

uint16_t floatToHalfBits(float v)
{
    __half_raw const raw = __half(__float2half_rn(v));
    return raw.x;
}

template <typename T>
T* toDevice(std::vector<T> const& host)
{
    void* ptr = nullptr;
    if (cudaMalloc(&ptr, host.size() * sizeof(T)) != cudaSuccess)
    {
        return nullptr;
    }
    cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return static_cast<T*>(ptr);
}

template <typename T>
std::vector<T> toHost(T const* device, size_t count)
{
    std::vector<T> host(count);
    cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
}

double maxAbsDiff(std::vector<float> const& a, std::vector<float> const& b)
{
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i)
    {
        m = std::fmax(m, std::fabs(static_cast<double>(a[i]) - b[i]));
    }
    return m;
}

void gpuChecks(IPluginV3* plugin, RecordingLogger& logger)
{
    int32_t const n = 2, c = 3, h = 37, w = 53, radius = 5;
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    size_t const planes = static_cast<size_t>(n) * c * h * w;
    size_t const pixels = static_cast<size_t>(n) * h * w;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> unit(0.F, 1.F);
    std::vector<float> image(planes), sigma(pixels), gradOut(planes);
    for (auto& v : image)
    {
        v = unit(rng);
    }
    for (auto& v : sigma)
    {
        v = 3.F * unit(rng);
    }
    for (auto& v : gradOut)
    {
        v = unit(rng) - 0.5F;
    }

    PluginTensorDesc in[2]{};
    PluginTensorDesc out[1]{};
    in[0].dims = dims4(n, c, h, w);
    in[1].dims = dims4(n, 1, h, w);
    out[0].dims = in[0].dims;

    // fp32 through the plugin's enqueue.
    std::vector<float> expected(planes);
    gpsf_host_forward_f32(image.data(), sigma.data(), expected.data(), n, c, h, w, radius);
    float* dImage = toDevice(image);
    float* dSigma = toDevice(sigma);
    float* dOut = toDevice(std::vector<float>(planes, 0.F));
    in[0].type = in[1].type = out[0].type = DataType::kFLOAT;
    void const* inputs[2] = {dImage, dSigma};
    void* outputs[1] = {dOut};
    int32_t status = runtime->onShapeChange(in, 2, out, 1);
    status |= runtime->enqueue(in, out, inputs, outputs, nullptr, nullptr);
    cudaError_t const syncStatus = cudaDeviceSynchronize();
    double const diff32 = maxAbsDiff(toHost(dOut, planes), expected);
    check(status == 0 && syncStatus == cudaSuccess && diff32 < 1e-5, "gpu_enqueue_fp32_matches_host",
        "status " + std::to_string(status) + " max diff " + std::to_string(diff32));

    // fp16 through the plugin's enqueue, against the host fp16 emulation.
    std::vector<uint16_t> image16(planes), sigma16(pixels), expected16(planes);
    for (size_t i = 0; i < planes; ++i)
    {
        image16[i] = floatToHalfBits(image[i]);
    }
    for (size_t i = 0; i < pixels; ++i)
    {
        sigma16[i] = floatToHalfBits(sigma[i]);
    }
    gpsf_host_forward_f16(image16.data(), sigma16.data(), expected16.data(), n, c, h, w, radius);
    uint16_t* dImage16 = toDevice(image16);
    uint16_t* dSigma16 = toDevice(sigma16);
    uint16_t* dOut16 = toDevice(std::vector<uint16_t>(planes, 0));
    in[0].type = in[1].type = out[0].type = DataType::kHALF;
    void const* inputs16[2] = {dImage16, dSigma16};
    void* outputs16[1] = {dOut16};
    status = runtime->enqueue(in, out, inputs16, outputs16, nullptr, nullptr);
    cudaDeviceSynchronize();
    std::vector<uint16_t> const got16 = toHost(dOut16, planes);
    double diff16 = 0.0;
    for (size_t i = 0; i < planes; ++i)
    {
        double const e = halfBitsToFloat(expected16[i]);
        diff16 = std::fmax(diff16, std::fabs(halfBitsToFloat(got16[i]) - e) / std::fmax(1.0, std::fabs(e)));
    }
    check(status == 0 && diff16 <= 1e-3, "gpu_enqueue_fp16_matches_host",
        "status " + std::to_string(status) + " max rel diff " + std::to_string(diff16));

    // Backward launcher against the host backward.
    std::vector<float> gi(planes), gs(pixels);
    gpsf_host_backward_f32(image.data(), sigma.data(), gradOut.data(), gi.data(), gs.data(), n, c, h, w, radius);
    float* dGradOut = toDevice(gradOut);
    float* dGi = toDevice(std::vector<float>(planes, 0.F));
    float* dGs = toDevice(std::vector<float>(pixels, 0.F));
    void* workspace = nullptr;
    cudaMalloc(&workspace, gausspsf::gaussPsfBackwardWorkspaceSize(n, h, w));
    cudaError_t const bw = gausspsf::gaussPsfBackward(dImage, dSigma, dGradOut, dGi, dGs, workspace, n, c, h, w,
        radius, nullptr);
    cudaDeviceSynchronize();
    double const diffGi = maxAbsDiff(toHost(dGi, planes), gi);
    double const diffGs = maxAbsDiff(toHost(dGs, pixels), gs);
    check(bw == cudaSuccess && diffGi < 1e-5 && diffGs < 1e-4, "gpu_backward_matches_host",
        "grad image diff " + std::to_string(diffGi) + " grad sigma diff " + std::to_string(diffGs));

    for (void* p : {static_cast<void*>(dImage), static_cast<void*>(dSigma), static_cast<void*>(dOut),
             static_cast<void*>(dImage16), static_cast<void*>(dSigma16), static_cast<void*>(dOut16),
             static_cast<void*>(dGradOut), static_cast<void*>(dGi), static_cast<void*>(dGs), workspace})
    {
        cudaFree(p);
    }
    logger.errors.clear();
}

} // namespace

int main()
{
    RecordingLogger logger;
    Finder finder(&logger);
    setLoggerFinder(&finder);

    int32_t nbCreators = 0;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check(nbCreators == 1 && creators != nullptr && creators[0] != nullptr, "get_creators");
    if (nbCreators != 1 || creators == nullptr || creators[0] == nullptr)
    {
        return 1;
    }
    InterfaceInfo const info = creators[0]->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1, "creator_interface",
        std::string("kind ") + info.kind);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::strcmp(creator->getPluginName(), "GaussPSF") == 0 && std::strcmp(creator->getPluginVersion(), "1") == 0
            && std::strcmp(creator->getPluginNamespace(), "") == 0,
        "creator_identity");
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields == 1 && std::strcmp(names->fields[0].name, "radius") == 0
            && names->fields[0].type == PluginFieldType::kINT32,
        "creator_field_names");

    // Invalid creations are refused and reported.
    PluginFieldCollection empty{0, nullptr};
    check(creator->createPlugin("x", &empty, TensorRTPhase::kBUILD) == nullptr && logger.takeError("radius"),
        "create_without_radius_fails");
    int32_t const tooBig = 65;
    check(createWithRadius(creator, &tooBig, PluginFieldType::kINT32, TensorRTPhase::kBUILD) == nullptr
            && logger.takeError("radius must be in [0, 64]"),
        "create_radius_too_big_fails");
    int32_t const negative = -1;
    check(createWithRadius(creator, &negative, PluginFieldType::kINT32, TensorRTPhase::kBUILD) == nullptr
            && logger.takeError("radius"),
        "create_negative_radius_fails");
    float const asFloat = 3.F;
    check(createWithRadius(creator, &asFloat, PluginFieldType::kFLOAT32, TensorRTPhase::kBUILD) == nullptr
            && logger.takeError("INT32"),
        "create_float_radius_fails");
    int64_t const asInt64 = 7;
    IPluginV3* plugin64 = createWithRadius(creator, &asInt64, PluginFieldType::kINT64, TensorRTPhase::kBUILD);
    check(plugin64 != nullptr && serializedRadius(plugin64) == 7, "create_int64_radius");
    delete plugin64;

    int32_t const radius = 5;
    IPluginV3* plugin = createWithRadius(creator, &radius, PluginFieldType::kINT32, TensorRTPhase::kBUILD);
    check(plugin != nullptr, "create_plugin");
    if (plugin == nullptr)
    {
        return 1;
    }
    check(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0, "plugin_interface");
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core != nullptr && build != nullptr && runtime != nullptr, "capabilities");
    check(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0
            && std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0
            && std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
        "capability_kinds");
    check(plugin->getCapabilityInterface(static_cast<PluginCapabilityType>(7)) == nullptr
            && logger.takeError("capability"),
        "unknown_capability_reported");
    check(std::strcmp(core->getPluginName(), "GaussPSF") == 0 && std::strcmp(core->getPluginVersion(), "1") == 0
            && std::strcmp(core->getPluginNamespace(), "") == 0,
        "core_identity");

    // Build capability.
    check(build->getNbOutputs() == 1, "nb_outputs");
    DataType outType = DataType::kINT8;
    DataType const halves[2] = {DataType::kHALF, DataType::kHALF};
    DataType const floats[2] = {DataType::kFLOAT, DataType::kFLOAT};
    DataType const ints[2] = {DataType::kINT32, DataType::kINT32};
    check(build->getOutputDataTypes(&outType, 1, halves, 2) == 0 && outType == DataType::kHALF, "output_type_half");
    check(build->getOutputDataTypes(&outType, 1, floats, 2) == 0 && outType == DataType::kFLOAT, "output_type_float");
    check(build->getOutputDataTypes(&outType, 1, ints, 2) != 0 && logger.takeError("FLOAT or HALF"),
        "output_type_int_rejected");
    check(build->getOutputDataTypes(&outType, 1, floats, 1) != 0 && logger.takeError("2 inputs"),
        "output_type_wrong_count_rejected");

    Dims const imageDims = dims4(-1, 3, -1, -1);
    Dims const sigmaDims = dims4(-1, 1, -1, -1);
    auto combo = [&](DataType t0, DataType t1, DataType t2, TensorFormat f1, int32_t pos) {
        DynamicPluginTensorDesc io[3] = {dynDesc(imageDims, t0), dynDesc(sigmaDims, t1, f1), dynDesc(imageDims, t2)};
        return build->supportsFormatCombination(pos, io, 2, 1);
    };
    bool formatsOk = true;
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        for (int32_t pos = 0; pos < 3; ++pos)
        {
            formatsOk = formatsOk && combo(t, t, t, TensorFormat::kLINEAR, pos);
        }
    }
    check(formatsOk, "formats_float_half_linear_supported");
    check(!combo(DataType::kINT8, DataType::kINT8, DataType::kINT8, TensorFormat::kLINEAR, 0)
            && !combo(DataType::kBF16, DataType::kBF16, DataType::kBF16, TensorFormat::kLINEAR, 0)
            && !combo(DataType::kFLOAT, DataType::kHALF, DataType::kFLOAT, TensorFormat::kLINEAR, 1)
            && !combo(DataType::kHALF, DataType::kHALF, DataType::kFLOAT, TensorFormat::kLINEAR, 2)
            && !combo(DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kCHW32, 1),
        "formats_others_rejected");

    alignas(8) static char exprStorage[16];
    auto expr = [](int i) { return reinterpret_cast<IDimensionExpr const*>(exprStorage + i); };
    DimsExprs inExprs[2]{};
    inExprs[0].nbDims = 4;
    inExprs[1].nbDims = 4;
    for (int i = 0; i < 4; ++i)
    {
        inExprs[0].d[i] = expr(i);
        inExprs[1].d[i] = expr(i == 1 ? 4 : i);
    }
    DimsExprs outExprs[1]{};
    FakeExprBuilder exprBuilder;
    int32_t const shapeStatus = build->getOutputShapes(inExprs, 2, nullptr, 0, outExprs, 1, exprBuilder);
    bool sameShape = shapeStatus == 0 && outExprs[0].nbDims == 4;
    for (int i = 0; i < 4 && sameShape; ++i)
    {
        sameShape = outExprs[0].d[i] == inExprs[0].d[i];
    }
    check(sameShape, "output_shape_is_image_shape");
    inExprs[0].nbDims = 3;
    check(build->getOutputShapes(inExprs, 2, nullptr, 0, outExprs, 1, exprBuilder) != 0 && logger.takeError("4-D"),
        "output_shape_rank_rejected");

    DynamicPluginTensorDesc goodIn[2] = {dynDesc(imageDims, DataType::kFLOAT), dynDesc(sigmaDims, DataType::kFLOAT)};
    DynamicPluginTensorDesc goodOut[1] = {dynDesc(imageDims, DataType::kFLOAT)};
    check(build->configurePlugin(goodIn, 2, goodOut, 1) == 0, "configure_dynamic");
    DynamicPluginTensorDesc badSigma[2] = {
        dynDesc(imageDims, DataType::kFLOAT), dynDesc(dims4(-1, 3, -1, -1), DataType::kFLOAT)};
    check(build->configurePlugin(badSigma, 2, goodOut, 1) != 0 && logger.takeError("1 channel"),
        "configure_sigma_channels_rejected");
    DynamicPluginTensorDesc badSize[2] = {
        dynDesc(dims4(2, 3, 8, 8), DataType::kFLOAT), dynDesc(dims4(2, 1, 8, 9), DataType::kFLOAT)};
    check(build->configurePlugin(badSize, 2, goodOut, 1) != 0 && logger.takeError("differ in dimension 3"),
        "configure_size_mismatch_rejected");
    check(build->getWorkspaceSize(goodIn, 2, goodOut, 1) == 0, "workspace_zero");

    // Runtime capability and serialization.
    PluginTensorDesc shapeIn[2]{};
    PluginTensorDesc shapeOut[1]{};
    shapeIn[0].dims = dims4(2, 3, 16, 24);
    shapeIn[1].dims = dims4(2, 1, 16, 24);
    shapeOut[0].dims = shapeIn[0].dims;
    check(runtime->onShapeChange(shapeIn, 2, shapeOut, 1) == 0, "on_shape_change");
    shapeIn[1].dims = dims4(3, 1, 16, 24);
    check(runtime->onShapeChange(shapeIn, 2, shapeOut, 1) != 0 && logger.takeError("differ in dimension 0"),
        "on_shape_change_mismatch_rejected");
    check(serializedRadius(plugin) == radius, "fields_to_serialize");

    PluginFieldCollection const* serialized = runtime->getFieldsToSerialize();
    IPluginV3* restored = creator->createPlugin("gauss_psf", serialized, TensorRTPhase::kRUNTIME);
    check(restored != nullptr && serializedRadius(restored) == radius, "deserialize_round_trip");
    delete restored;

    IPluginV3* cloned = plugin->clone();
    bool cloneOk = cloned != nullptr && serializedRadius(cloned) == radius;
    if (cloneOk)
    {
        auto* clonedRuntime
            = static_cast<IPluginV3OneRuntime*>(cloned->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        cloneOk = clonedRuntime->getFieldsToSerialize()->fields[0].data
            != runtime->getFieldsToSerialize()->fields[0].data;
    }
    check(cloneOk, "clone_owns_its_fields");
    delete cloned;
    IPluginV3* attached = runtime->attachToContext(nullptr);
    check(attached != nullptr && serializedRadius(attached) == radius, "attach_to_context");
    delete attached;

    // Enqueue: a real comparison on a GPU, else a reported launch failure.
    int deviceCount = 0;
    cudaError_t const deviceStatus = cudaGetDeviceCount(&deviceCount);
    PluginTensorDesc in[2]{};
    PluginTensorDesc out[1]{};
    in[0].dims = dims4(1, 3, 8, 8);
    in[1].dims = dims4(1, 1, 8, 8);
    out[0].dims = in[0].dims;
    in[0].type = in[1].type = out[0].type = DataType::kFLOAT;
    void const* nullInputs[2] = {nullptr, nullptr};
    void* nullOutputs[1] = {nullptr};
    check(runtime->enqueue(in, out, nullInputs, nullOutputs, nullptr, nullptr) != 0
            && logger.takeError("kernel launch failed"),
        "enqueue_null_buffers_reported");
    if (deviceStatus != cudaSuccess || deviceCount == 0)
    {
        // No device: the launch itself must fail and be reported (pointers are never dereferenced).
        alignas(16) static float fake[256];
        void const* fakeInputs[2] = {fake, fake};
        void* fakeOutputs[1] = {fake};
        check(runtime->enqueue(in, out, fakeInputs, fakeOutputs, nullptr, nullptr) != 0
                && logger.takeError("kernel launch failed"),
            "enqueue_without_gpu_reported");
        std::printf("SKIP gpu_enqueue: no CUDA device (%s)\n", cudaGetErrorString(deviceStatus));
    }
    else
    {
        gpuChecks(plugin, logger);
    }
    delete plugin;

    std::printf("%s: %d failure(s)\n", gFailures == 0 ? "OK" : "FAILED", gFailures);
    return gFailures == 0 ? 0 : 1;
}
