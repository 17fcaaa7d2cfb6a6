/* The server's optimizer step on a round's aggregate (fed.h, fp_fed_server_opt):
 * FedAvg / FedAvgM (sgd) and FedAdam / FedYogi (Reddi et al. 2021). One job: the
 * state update and the step, given the aggregate; the round loop and the
 * checkpoint own the buffers. */
#include <math.h>

#include "fed_internal.h"

void fed_server_opt_step(const fp_fed_server_config *cfg, float *global, float *velocity, float *m, float *v,
                         const float *delta, uint64_t dim)
{
    const double lr = cfg->server_lr;
    if (cfg->server_optimizer == FP_FED_SERVER_SGD) {
        if (velocity) { /* FedAvgM: the step follows the aggregates' running sum */
            for (uint64_t i = 0; i < dim; i++) {
                velocity[i] = cfg->server_momentum * velocity[i] + delta[i];
                global[i] += cfg->server_lr * velocity[i];
            }
        } else {
            for (uint64_t i = 0; i < dim; i++)
                global[i] += cfg->server_lr * delta[i];
        }
        return;
    }
    /* Adam and Yogi share m and the step; only v's update differs. Per coordinate in
     * double (the state is stored as float), so the step does not depend on the order
     * of float rounding the way a vectorised float loop would. */
    const double b1 = cfg->server_beta1, b2 = cfg->server_beta2, tau = cfg->server_tau;
    const int yogi = cfg->server_optimizer == FP_FED_SERVER_YOGI;
    for (uint64_t i = 0; i < dim; i++) {
        double d = delta[i], d2 = d * d, vi = v[i];
        double mi = b1 * m[i] + (1 - b1) * d;
        if (yogi) {
            double s = vi > d2 ? 1.0 : vi < d2 ? -1.0 : 0.0;
            vi = vi - (1 - b2) * d2 * s;
        } else {
            vi = b2 * vi + (1 - b2) * d2;
        }
        m[i] = (float)mi;
        v[i] = (float)vi;
        global[i] = (float)(global[i] + lr * (double)m[i] / (sqrt((double)v[i]) + tau));
    }
}
