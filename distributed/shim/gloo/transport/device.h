// Stand-in for gloo/transport/device.h: see gloo/forward.h for why.
#pragma once
#include <gloo/forward.h>
