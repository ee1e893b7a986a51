// The risk page: not built yet (its nav link stays hidden until this file registers window.LHPages.risk).
"use strict";
