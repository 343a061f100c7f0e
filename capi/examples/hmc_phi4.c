/*
 * HMC on 2D phi^4 from C through latticeml's C interface.
 *
 *   cargo build --release -p latticeml-capi
 *   cc -std=c99 -O2 capi/examples/hmc_phi4.c -I include -L target/release -llatticeml_c \
 *      -Wl,-rpath,$PWD/target/release -o hmc_phi4
 *   ./hmc_phi4 [seed [checkpoint-path]]
 *
 * Prints one "name value error" line per observable, the acceptance and <exp(-dH)>, in the
 * format the test (capi/tests/examples.rs) reads. The same parameters on the command line,
 *   latticeml sample --theory phi4 --dims 8x8 --kappa 0.26 --lambda 0.022 --chains 8 \
 *     --trajectories 1200 --therm 200 --tau 1 --steps 8 --integrator omelyan --seed SEED
 * give the same chain, bit for bit, on any thread count.
 */
#include <stdio.h>
#include <stdlib.h>

#include "latticeml.h"

/* Stops with the library's message when a call fails. */
#define CHECK(call)                                                                      \
    do {                                                                                 \
        int status_ = (call);                                                            \
        if (status_ != LATTICEML_OK) {                                                   \
            fprintf(stderr, "%s failed (%d): %s\n", #call, status_, latticeml_last_error()); \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 1;
    const size_t extents[2] = {8, 8};
    const size_t chains = 8;

    latticeml_device *device = NULL;
    latticeml_theory *theory = NULL;
    latticeml_sampler *hmc = NULL;
    latticeml_result *result = NULL;
    char text[256];

    CHECK(latticeml_device_new("cpu", &device));
    CHECK(latticeml_device_describe(device, text, sizeof text));
    fprintf(stderr, "latticeml %s on %s\n", latticeml_version(), text);

    CHECK(latticeml_theory_phi4(2, extents, 0.26, 0.022, &theory));
    CHECK(latticeml_hmc_new(theory, device, chains, 1.0, 8, "omelyan", seed, &hmc));
    CHECK(latticeml_sampler_thermalize(hmc, 200));
    CHECK(latticeml_sampler_run(hmc, 1000, &result));

    size_t count = 0;
    CHECK(latticeml_result_observable_count(result, &count));
    for (size_t i = 0; i < count; i++) {
        double value, error, tau;
        CHECK(latticeml_result_observable_name(result, i, text, sizeof text));
        CHECK(latticeml_result_observable(result, text, &value, &error, &tau));
        printf("%s %.17g %.17g\n", text, value, error);
    }
    double acceptance, w, w_error;
    CHECK(latticeml_result_acceptance(result, &acceptance));
    CHECK(latticeml_result_exp_minus_delta_h(result, &w, &w_error));
    printf("acceptance %.17g 0\n", acceptance);
    printf("exp_minus_dh %.17g %.17g\n", w, w_error);

    /* The fields, [chain][site], for the host code's own measurements. */
    size_t volume = 0;
    CHECK(latticeml_theory_volume(theory, &volume));
    double *phi = malloc(chains * volume * sizeof *phi);
    if (phi == NULL) return 1;
    CHECK(latticeml_sampler_get_fields(hmc, phi, chains * volume));
    double m0 = 0.0;
    for (size_t s = 0; s < volume; s++) m0 += phi[s];
    printf("chain0_magnetisation %.17g 0\n", m0 / (double)volume);
    free(phi);

    if (argc > 2) CHECK(latticeml_sampler_checkpoint(hmc, argv[2]));

    latticeml_result_free(result);
    latticeml_sampler_free(hmc);
    latticeml_theory_free(theory);
    latticeml_device_free(device);
    return 0;
}
