/* icpns.h - the whole public API of libicpns. */
#ifndef ICPNS_H
#define ICPNS_H
#include "icpns/common.h"
#include "icpns/buf.h"
#include "icpns/rng.h"
#include "icpns/alias.h"
#include "icpns/idmap.h"
#include "icpns/dataset.h"
#include "icpns/snapshot.h"
#include "icpns/sampler.h"
#include "icpns/gen.h"
#include "icpns/kmeans.h"
#include "icpns/shard.h"
#endif
