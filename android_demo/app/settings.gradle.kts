// The Android Studio project: this folder is the app, ../core (the inpainting loop in plain Java) a module of it.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "edge-inpaint"
include(":core")
project(":core").projectDir = file("../core")
