// The market page: not built yet (its nav link stays hidden until this file registers window.LHPages.market).
"use strict";
