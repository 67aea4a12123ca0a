// The app: thin Android code over :core (android_demo/core), which holds the whole loop.
plugins {
    alias(libs.plugins.android.application)
}

android {
    namespace = "dev.edge.inpaint"  // edge/device/push.py's APP_PACKAGE: where `edge android push` puts bundles
    compileSdk = 35

    defaultConfig {
        applicationId = "dev.edge.inpaint"
        minSdk = 29  // MediaStore.RELATIVE_PATH and IS_PENDING; ImageDecoder (applies EXIF orientation)
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        ndk {
            abiFilters += listOf("arm64-v8a", "x86_64")  // the ABIs the ExecuTorch AAR ships
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_11
        targetCompatibility = JavaVersion.VERSION_11
    }
}

dependencies {
    implementation(project(":core"))
    implementation(libs.executorch.android)
    implementation(libs.litert)
}
